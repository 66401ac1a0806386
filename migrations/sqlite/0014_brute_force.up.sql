-- Addresses blocked after too many failed sign-ins, for every tenant, until
-- blocked_until (or an operator's unblock).
CREATE TABLE ip_blocks (
    ip            TEXT PRIMARY KEY NOT NULL,
    tenant_id     BLOB,
    failures      INTEGER NOT NULL,
    blocked_at    TEXT NOT NULL,
    blocked_until TEXT NOT NULL,
    until_unix    INTEGER NOT NULL
);
-- Failed sign-ins per account (the hash of the email as typed, so unknown accounts
-- are treated alike): growing delays, then a temporary lock.
CREATE TABLE account_lockouts (
    tenant_id         BLOB NOT NULL,
    account_hash      BLOB NOT NULL,
    failures          INTEGER NOT NULL,
    last_failure_unix INTEGER NOT NULL,
    locked_until_unix INTEGER,
    PRIMARY KEY (tenant_id, account_hash)
);
CREATE INDEX login_attempts_ip_time ON login_attempts (ip, at_unix);
