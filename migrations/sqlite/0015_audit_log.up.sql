-- The audit log. Events are appended with their MAC (under a key derived from the
-- master key) to audit_queue, in the transaction of the change they record: one
-- narrow row, so the change's transaction stays small. A sealer then moves them, in
-- batches, into audit_events with their place in their tenant's hash chain (seq,
-- hash). tenant_id is the nil UUID for events that belong to no tenant. at_us is
-- microseconds since the Unix epoch.
CREATE TABLE audit_events (
    id          BLOB PRIMARY KEY NOT NULL,
    tenant_id   BLOB NOT NULL,
    seq         INTEGER NOT NULL,
    at_us       INTEGER NOT NULL,
    event_type  TEXT NOT NULL,
    actor       TEXT NOT NULL,
    target      TEXT,
    result      TEXT NOT NULL,
    ip          TEXT,
    user_agent  TEXT,
    request_id  TEXT,
    details     TEXT NOT NULL,
    mac         BLOB NOT NULL,
    hash        BLOB NOT NULL
);
CREATE UNIQUE INDEX audit_events_chain ON audit_events (tenant_id, seq);
CREATE INDEX audit_events_tenant_time ON audit_events (tenant_id, at_us, id);
CREATE INDEX audit_events_time ON audit_events (at_us, id);
-- Events written and not yet sealed, in the order they were appended.
CREATE TABLE audit_queue (
    pos         INTEGER PRIMARY KEY,
    id          BLOB NOT NULL,
    tenant_id   BLOB NOT NULL,
    at_us       INTEGER NOT NULL,
    event_type  TEXT NOT NULL,
    actor       TEXT NOT NULL,
    target      TEXT,
    result      TEXT NOT NULL,
    ip          TEXT,
    user_agent  TEXT,
    request_id  TEXT,
    details     TEXT NOT NULL,
    mac         BLOB NOT NULL
);
-- Each chain's head, and its anchor: the signed checkpoint retention pruned up to.
CREATE TABLE audit_chains (
    tenant_id   BLOB PRIMARY KEY NOT NULL,
    last_seq    INTEGER NOT NULL,
    last_hash   BLOB NOT NULL,
    anchor_seq  INTEGER NOT NULL,
    anchor_hash BLOB NOT NULL
);
-- Ed25519 signatures over (tenant, seq, hash, time) of chain heads.
CREATE TABLE audit_checkpoints (
    tenant_id BLOB NOT NULL,
    seq       INTEGER NOT NULL,
    hash      BLOB NOT NULL,
    at_us     INTEGER NOT NULL,
    key_id    TEXT NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
-- How far each chain has been delivered to each sink (continuous delivery to a SIEM).
CREATE TABLE audit_deliveries (
    sink          TEXT NOT NULL,
    tenant_id     BLOB NOT NULL,
    delivered_seq INTEGER NOT NULL,
    PRIMARY KEY (sink, tenant_id)
);
