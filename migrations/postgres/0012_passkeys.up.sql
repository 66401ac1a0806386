-- WebAuthn credentials (passkeys and security keys), several per user, each named.
-- passkey is webauthn-rs's record of the credential: public key, algorithm and
-- signature counter (nothing secret). A credential id is unique within a tenant.
CREATE TABLE webauthn_credentials (
    id            UUID PRIMARY KEY,
    tenant_id     UUID NOT NULL,
    user_id       UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id BYTEA NOT NULL,
    name          TEXT NOT NULL,
    passkey       TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    last_used_at  TIMESTAMPTZ,
    UNIQUE (tenant_id, credential_id)
);
CREATE INDEX webauthn_credentials_user ON webauthn_credentials (user_id);
-- The server's half of a registration or passkey sign-in between its two requests,
-- so any replica can finish what another started. One use: finishing deletes it.
CREATE TABLE webauthn_ceremonies (
    id_hash    BYTEA PRIMARY KEY,
    tenant_id  UUID NOT NULL,
    user_id    UUID REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL CHECK (purpose IN ('register', 'sign_in')),
    name       TEXT,
    state      TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
-- A sign-in's second step by security key keeps its WebAuthn state with the challenge.
ALTER TABLE mfa_challenges ADD COLUMN webauthn_state TEXT;
