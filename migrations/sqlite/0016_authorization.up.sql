-- Authorization. Each change to a tenant's Cedar policies or schema writes a whole
-- new version (policies is a JSON object of policy id to Cedar text), so a version
-- can be read, compared and rolled back to by itself. authz_state carries each
-- tenant's current policy version and an entity version that any change to the
-- entities Cedar sees (stored entities, users' roles, status, email and username,
-- groups) bumps;
-- every process polls it to drop what it has cached. changed_at_us is microseconds
-- since the Unix epoch.
CREATE TABLE policy_versions (
    tenant_id  BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    actor      TEXT NOT NULL,
    change     TEXT NOT NULL,
    policies   TEXT NOT NULL,
    schema     TEXT,
    PRIMARY KEY (tenant_id, version)
);
CREATE TABLE authz_entities (
    tenant_id   BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    entity_type TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    body        TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, entity_type, entity_id)
);
CREATE TABLE authz_state (
    tenant_id      BLOB PRIMARY KEY NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    policy_version INTEGER NOT NULL DEFAULT 0,
    entity_version INTEGER NOT NULL DEFAULT 0,
    changed_at_us  INTEGER NOT NULL
);
CREATE INDEX authz_state_changed ON authz_state (changed_at_us);
CREATE TABLE groups (
    id          BLOB PRIMARY KEY NOT NULL,
    tenant_id   BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT,
    created_at  TEXT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE TABLE group_members (
    group_id BLOB NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id  BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    added_at TEXT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);
CREATE TABLE roles (
    tenant_id   BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
-- Changes to what Cedar knows about users bump the entity version in the same
-- transaction, whoever makes them (API, CLI or another replica).
CREATE TRIGGER users_authz_update AFTER UPDATE OF roles, status, email, username ON users
BEGIN
    INSERT INTO authz_state (tenant_id, entity_version, changed_at_us)
    VALUES (NEW.tenant_id, 1, CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER))
    ON CONFLICT (tenant_id) DO UPDATE SET entity_version = entity_version + 1, changed_at_us = excluded.changed_at_us;
END;
CREATE TRIGGER users_authz_delete AFTER DELETE ON users
BEGIN
    INSERT INTO authz_state (tenant_id, entity_version, changed_at_us)
    SELECT OLD.tenant_id, 1, CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)
    WHERE EXISTS (SELECT 1 FROM tenants WHERE id = OLD.tenant_id)
    ON CONFLICT (tenant_id) DO UPDATE SET entity_version = entity_version + 1, changed_at_us = excluded.changed_at_us;
END;
CREATE TRIGGER group_members_authz_insert AFTER INSERT ON group_members
BEGIN
    INSERT INTO authz_state (tenant_id, entity_version, changed_at_us)
    SELECT tenant_id, 1, CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER) FROM groups WHERE id = NEW.group_id
    ON CONFLICT (tenant_id) DO UPDATE SET entity_version = entity_version + 1, changed_at_us = excluded.changed_at_us;
END;
CREATE TRIGGER group_members_authz_delete AFTER DELETE ON group_members
BEGIN
    INSERT INTO authz_state (tenant_id, entity_version, changed_at_us)
    SELECT tenant_id, 1, CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER) FROM groups WHERE id = OLD.group_id
    ON CONFLICT (tenant_id) DO UPDATE SET entity_version = entity_version + 1, changed_at_us = excluded.changed_at_us;
END;
