-- The audit log. Events are appended with their MAC (under a key derived from the
-- master key) to audit_queue, in the transaction of the change they record: one
-- narrow row, so the change's transaction stays small. A sealer then moves them, in
-- batches, into audit_events with their place in their tenant's hash chain (seq,
-- hash). tenant_id is the nil UUID for events that belong to no tenant. at_us is
-- microseconds since the Unix epoch.
CREATE TABLE audit_events (
    id          UUID PRIMARY KEY,
    tenant_id   UUID NOT NULL,
    seq         BIGINT NOT NULL,
    at_us       BIGINT NOT NULL,
    event_type  TEXT NOT NULL,
    actor       TEXT NOT NULL,
    target      TEXT,
    result      TEXT NOT NULL,
    ip          TEXT,
    user_agent  TEXT,
    request_id  TEXT,
    details     TEXT NOT NULL,
    mac         BYTEA NOT NULL,
    hash        BYTEA NOT NULL
);
CREATE UNIQUE INDEX audit_events_chain ON audit_events (tenant_id, seq);
CREATE INDEX audit_events_tenant_time ON audit_events (tenant_id, at_us, id);
CREATE INDEX audit_events_time ON audit_events (at_us, id);
-- Events written and not yet sealed, in the order they were appended.
CREATE TABLE audit_queue (
    pos         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          UUID NOT NULL,
    tenant_id   UUID NOT NULL,
    at_us       BIGINT NOT NULL,
    event_type  TEXT NOT NULL,
    actor       TEXT NOT NULL,
    target      TEXT,
    result      TEXT NOT NULL,
    ip          TEXT,
    user_agent  TEXT,
    request_id  TEXT,
    details     TEXT NOT NULL,
    mac         BYTEA NOT NULL
);
-- Each chain's head, and its anchor: the signed checkpoint retention pruned up to.
CREATE TABLE audit_chains (
    tenant_id   UUID PRIMARY KEY,
    last_seq    BIGINT NOT NULL,
    last_hash   BYTEA NOT NULL,
    anchor_seq  BIGINT NOT NULL,
    anchor_hash BYTEA NOT NULL
);
-- Ed25519 signatures over (tenant, seq, hash, time) of chain heads.
CREATE TABLE audit_checkpoints (
    tenant_id UUID NOT NULL,
    seq       BIGINT NOT NULL,
    hash      BYTEA NOT NULL,
    at_us     BIGINT NOT NULL,
    key_id    TEXT NOT NULL,
    signature BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
-- How far each chain has been delivered to each sink (continuous delivery to a SIEM).
CREATE TABLE audit_deliveries (
    sink          TEXT NOT NULL,
    tenant_id     UUID NOT NULL,
    delivered_seq BIGINT NOT NULL,
    PRIMARY KEY (sink, tenant_id)
);
