CREATE TABLE signing_keys (
    id                TEXT PRIMARY KEY,
    tenant_id         UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    algorithm         TEXT NOT NULL,
    public_jwk        JSONB NOT NULL,
    private_encrypted BYTEA NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('active', 'retired')),
    created_at        TIMESTAMPTZ NOT NULL,
    retired_at        TIMESTAMPTZ
);
-- At most one key signs for a tenant, even with several processes creating it at once.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (tenant_id) WHERE status = 'active';
CREATE INDEX signing_keys_tenant ON signing_keys (tenant_id, created_at);
