ALTER TABLE mfa_challenges DROP COLUMN email_code_hash;
ALTER TABLE mfa_challenges DROP COLUMN device_hash;
ALTER TABLE mfa_challenges DROP COLUMN risk_reasons;
ALTER TABLE mfa_challenges DROP COLUMN risk_score;
ALTER TABLE sessions DROP COLUMN risk_reasons;
ALTER TABLE sessions DROP COLUMN risk_score;
DROP TABLE known_login_sources;
DROP TABLE login_attempts;
