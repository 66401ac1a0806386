DROP TABLE audit_deliveries;
DROP TABLE audit_checkpoints;
DROP TABLE audit_chains;
DROP TABLE audit_queue;
DROP TABLE audit_events;
