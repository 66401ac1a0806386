CREATE TABLE users (
    id                       BLOB PRIMARY KEY NOT NULL,
    tenant_id                BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email                    TEXT NOT NULL,
    username                 TEXT,
    display_name             TEXT,
    status                   TEXT NOT NULL CHECK (status IN ('active', 'disabled', 'locked', 'pending_verification')),
    password_hash            TEXT,
    password_change_required BOOLEAN NOT NULL,
    created_at               TEXT NOT NULL,
    updated_at               TEXT NOT NULL,
    last_login_at            TEXT,
    UNIQUE (tenant_id, email)
);
CREATE UNIQUE INDEX users_tenant_username ON users (tenant_id, username) WHERE username IS NOT NULL;
CREATE INDEX users_tenant_id ON users (tenant_id, id);
