-- Single-use tokens sent by email (verification, password reset), stored as SHA-256.
CREATE TABLE email_tokens (
    id          UUID PRIMARY KEY,
    tenant_id   UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL CHECK (purpose IN ('verify_email', 'password_reset')),
    token_hash  BYTEA NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ
);
CREATE INDEX email_tokens_user ON email_tokens (tenant_id, user_id);

-- Mail waiting to be sent. Scheduling columns are Unix milliseconds so both
-- databases compare them the same way.
CREATE TABLE email_outbox (
    id              UUID PRIMARY KEY,
    tenant_id       UUID REFERENCES tenants (id) ON DELETE CASCADE,
    template        TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    text_body       TEXT NOT NULL,
    html_body       TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    locked_until_ms BIGINT NOT NULL,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    sent_at         TIMESTAMPTZ
);
CREATE INDEX email_outbox_due ON email_outbox (status, next_attempt_ms);
