-- Authorization. Each change to a tenant's Cedar policies or schema writes a whole
-- new version (policies is a JSON object of policy id to Cedar text), so a version
-- can be read, compared and rolled back to by itself. authz_state carries each
-- tenant's current policy version and an entity version that any change to the
-- entities Cedar sees (stored entities, users' roles, status, email and username,
-- groups) bumps;
-- every process polls it to drop what it has cached. changed_at_us is microseconds
-- since the Unix epoch.
CREATE TABLE policy_versions (
    tenant_id  UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version    BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    actor      TEXT NOT NULL,
    change     TEXT NOT NULL,
    policies   TEXT NOT NULL,
    schema     TEXT,
    PRIMARY KEY (tenant_id, version)
);
CREATE TABLE authz_entities (
    tenant_id   UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    entity_type TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    body        TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, entity_type, entity_id)
);
CREATE TABLE authz_state (
    tenant_id      UUID PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    policy_version BIGINT NOT NULL DEFAULT 0,
    entity_version BIGINT NOT NULL DEFAULT 0,
    changed_at_us  BIGINT NOT NULL
);
CREATE INDEX authz_state_changed ON authz_state (changed_at_us);
CREATE TABLE groups (
    id          UUID PRIMARY KEY,
    tenant_id   UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE TABLE group_members (
    group_id UUID NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id  UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    added_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);
CREATE TABLE roles (
    tenant_id   UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
-- Changes to what Cedar knows about users bump the entity version in the same
-- transaction, whoever makes them (API, CLI or another replica).
CREATE FUNCTION authz_bump_entities(tenant UUID) RETURNS void LANGUAGE sql AS $$
    INSERT INTO authz_state (tenant_id, entity_version, changed_at_us)
    SELECT tenant, 1, (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT
    WHERE EXISTS (SELECT 1 FROM tenants WHERE id = tenant)
    ON CONFLICT (tenant_id) DO UPDATE
        SET entity_version = authz_state.entity_version + 1, changed_at_us = excluded.changed_at_us;
$$;
CREATE FUNCTION authz_users_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM authz_bump_entities(OLD.tenant_id);
    ELSIF NEW.roles IS DISTINCT FROM OLD.roles OR NEW.status IS DISTINCT FROM OLD.status
        OR NEW.email IS DISTINCT FROM OLD.email OR NEW.username IS DISTINCT FROM OLD.username THEN
        PERFORM authz_bump_entities(NEW.tenant_id);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER users_authz_changed AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION authz_users_changed();
CREATE FUNCTION authz_members_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM authz_bump_entities(g.tenant_id) FROM groups g
        WHERE g.id = (CASE WHEN TG_OP = 'DELETE' THEN OLD.group_id ELSE NEW.group_id END);
    RETURN NULL;
END;
$$;
CREATE TRIGGER group_members_authz_changed AFTER INSERT OR DELETE ON group_members
    FOR EACH ROW EXECUTE FUNCTION authz_members_changed();
