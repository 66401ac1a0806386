-- Addresses blocked after too many failed sign-ins, for every tenant, until
-- blocked_until (or an operator's unblock).
CREATE TABLE ip_blocks (
    ip            TEXT PRIMARY KEY,
    tenant_id     UUID,
    failures      BIGINT NOT NULL,
    blocked_at    TIMESTAMPTZ NOT NULL,
    blocked_until TIMESTAMPTZ NOT NULL,
    until_unix    BIGINT NOT NULL
);
-- Failed sign-ins per account (the hash of the email as typed, so unknown accounts
-- are treated alike): growing delays, then a temporary lock.
CREATE TABLE account_lockouts (
    tenant_id         UUID NOT NULL,
    account_hash      BYTEA NOT NULL,
    failures          BIGINT NOT NULL,
    last_failure_unix BIGINT NOT NULL,
    locked_until_unix BIGINT,
    PRIMARY KEY (tenant_id, account_hash)
);
CREATE INDEX login_attempts_ip_time ON login_attempts (ip, at_unix);
