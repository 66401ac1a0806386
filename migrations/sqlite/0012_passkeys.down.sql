ALTER TABLE mfa_challenges DROP COLUMN webauthn_state;
DROP TABLE webauthn_ceremonies;
DROP TABLE webauthn_credentials;
