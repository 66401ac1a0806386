-- A session's refresh tokens are numbered: token n+1 replaces token n, and the
-- primary key (session_id, generation) lets one statement spend a token and store
-- its successor, since of two requests racing with one token only one can insert
-- generation n+1. A token is spent when its successor exists. Keyed this way an
-- insert touches two indexes instead of five.
CREATE TABLE refresh_token_chain (
    session_id  UUID NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    generation  BIGINT NOT NULL,
    tenant_id   UUID NOT NULL,
    token_hash  BYTEA NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (session_id, generation)
);
INSERT INTO refresh_token_chain (session_id, generation, tenant_id, token_hash, created_at)
SELECT session_id, ROW_NUMBER() OVER (PARTITION BY session_id ORDER BY created_at, id) - 1,
       tenant_id, token_hash, created_at
FROM refresh_tokens;
DROP TABLE refresh_tokens;
ALTER TABLE refresh_token_chain RENAME TO refresh_tokens;
