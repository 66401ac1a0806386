CREATE TABLE signing_keys (
    id                TEXT PRIMARY KEY NOT NULL,
    tenant_id         BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    algorithm         TEXT NOT NULL,
    public_jwk        TEXT NOT NULL,
    private_encrypted BLOB NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('active', 'retired')),
    created_at        TEXT NOT NULL,
    retired_at        TEXT
);
-- At most one key signs for a tenant, even with several processes creating it at once.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (tenant_id) WHERE status = 'active';
CREATE INDEX signing_keys_tenant ON signing_keys (tenant_id, created_at);
