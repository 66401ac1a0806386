CREATE TABLE sessions (
    id              BLOB PRIMARY KEY NOT NULL,
    tenant_id       BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id         BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash      BLOB NOT NULL UNIQUE,
    created_at      TEXT NOT NULL,
    last_seen_at    TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    idle_expires_at TEXT NOT NULL,
    ip              TEXT,
    user_agent      TEXT,
    revoked_at      TEXT
);
CREATE INDEX sessions_user ON sessions (tenant_id, user_id);
