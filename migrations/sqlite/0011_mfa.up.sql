-- TOTP factor per user; the secret is AES-256-GCM under the master key. A code is
-- accepted once: last_step is the newest time step used, and only later ones pass.
CREATE TABLE mfa_totp (
    user_id      BLOB PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id    BLOB NOT NULL,
    secret       BLOB NOT NULL,
    created_at   TEXT NOT NULL,
    confirmed_at TEXT,
    last_step    INTEGER NOT NULL DEFAULT -1
);
-- One-time recovery codes, stored as SHA-256 of the code.
CREATE TABLE mfa_recovery_codes (
    user_id   BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id BLOB NOT NULL,
    code_hash BLOB NOT NULL,
    used_at   TEXT,
    PRIMARY KEY (user_id, code_hash)
);
-- The second step of a sign-in, opened by a correct password: its id is a random
-- token known only by hash; it expires and allows a few tries.
CREATE TABLE mfa_challenges (
    id_hash    BLOB PRIMARY KEY NOT NULL,
    tenant_id  BLOB NOT NULL,
    user_id    BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL CHECK (purpose IN ('verify', 'enroll')),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    ip         TEXT,
    user_agent TEXT
);
CREATE INDEX mfa_challenges_user ON mfa_challenges (user_id);
-- When a tenant requires MFA, the time by which a user without a factor must enrol
-- (set at the first sign-in under the requirement).
CREATE TABLE mfa_enrollment_deadlines (
    user_id   BLOB PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id BLOB NOT NULL,
    due_at    TEXT NOT NULL
);
