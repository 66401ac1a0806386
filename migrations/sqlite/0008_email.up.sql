-- Single-use tokens sent by email (verification, password reset), stored as SHA-256.
CREATE TABLE email_tokens (
    id          BLOB PRIMARY KEY NOT NULL,
    tenant_id   BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL CHECK (purpose IN ('verify_email', 'password_reset')),
    token_hash  BLOB NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    used_at     TEXT
);
CREATE INDEX email_tokens_user ON email_tokens (tenant_id, user_id);

-- Mail waiting to be sent. Scheduling columns are Unix milliseconds so both
-- databases compare them the same way.
CREATE TABLE email_outbox (
    id              BLOB PRIMARY KEY NOT NULL,
    tenant_id       BLOB REFERENCES tenants (id) ON DELETE CASCADE,
    template        TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    text_body       TEXT NOT NULL,
    html_body       TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    locked_until_ms INTEGER NOT NULL,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT
);
CREATE INDEX email_outbox_due ON email_outbox (status, next_attempt_ms);
