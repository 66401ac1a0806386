CREATE TABLE refresh_tokens_by_id (
    id          BLOB PRIMARY KEY NOT NULL,
    tenant_id   BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    session_id  BLOB NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    token_hash  BLOB NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    used_at     TEXT
);
INSERT INTO refresh_tokens_by_id (id, tenant_id, session_id, token_hash, created_at, used_at)
SELECT randomblob(16), spent.tenant_id, spent.session_id, spent.token_hash, spent.created_at, successor.created_at
FROM refresh_tokens spent
LEFT JOIN refresh_tokens successor
    ON successor.session_id = spent.session_id AND successor.generation = spent.generation + 1;
DROP TABLE refresh_tokens;
ALTER TABLE refresh_tokens_by_id RENAME TO refresh_tokens;
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);
