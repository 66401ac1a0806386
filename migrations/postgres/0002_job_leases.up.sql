-- Time-limited leases that let exactly one replica run a scheduled job
-- (maintenance, audit checkpoints) at a time.
CREATE TABLE job_leases (
    name        TEXT PRIMARY KEY NOT NULL,
    holder      TEXT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL
);
