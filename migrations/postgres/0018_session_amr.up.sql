-- How each session was authenticated (RFC 8176 values, space-separated, such as
-- "pwd otp mfa"), for the amr claim of its access tokens. NULL: a session opened
-- before guard recorded it.
ALTER TABLE sessions ADD COLUMN amr TEXT;
