-- Sign-in attempts, for the risk signals "recent failures on the account / from the
-- address" and "many accounts tried from one address". Times are Unix seconds so
-- windows compare as numbers on both backends. Rows older than a day are pruned.
CREATE TABLE login_attempts (
    tenant_id    UUID NOT NULL,
    ip           TEXT NOT NULL,
    account_hash BYTEA NOT NULL,
    succeeded    BOOLEAN NOT NULL,
    at_unix      BIGINT NOT NULL
);
CREATE INDEX login_attempts_ip ON login_attempts (tenant_id, ip, at_unix);
CREATE INDEX login_attempts_account ON login_attempts (tenant_id, account_hash, at_unix);
-- Devices (hash of the device cookie), addresses and networks a user has completed a
-- sign-in from.
CREATE TABLE known_login_sources (
    user_id       UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id     UUID NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('device', 'ip', 'network')),
    value         TEXT NOT NULL,
    first_seen_at TIMESTAMPTZ NOT NULL,
    last_seen_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, kind, value)
);
-- The risk of the sign-in that opened a session, shown in the user's session list.
ALTER TABLE sessions ADD COLUMN risk_score BIGINT;
ALTER TABLE sessions ADD COLUMN risk_reasons TEXT;
-- What the password step saw, carried to the session the second step opens, and the
-- hash of a one-time code sent by email when a risky sign-in of a user without a
-- factor is stepped up.
ALTER TABLE mfa_challenges ADD COLUMN risk_score BIGINT;
ALTER TABLE mfa_challenges ADD COLUMN risk_reasons TEXT;
ALTER TABLE mfa_challenges ADD COLUMN device_hash TEXT;
ALTER TABLE mfa_challenges ADD COLUMN email_code_hash BYTEA;
