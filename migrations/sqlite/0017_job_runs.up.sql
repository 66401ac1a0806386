-- The latest outcome of each operator job (backup, audit verification, maintenance),
-- written by whichever process ran it, so that every replica can export it as a
-- metric for alerts such as "no backup for a day".
CREATE TABLE job_runs (
    job             TEXT PRIMARY KEY NOT NULL,
    last_outcome    TEXT NOT NULL CHECK (last_outcome IN ('ok', 'failed', 'broken')),
    last_run_at     TEXT NOT NULL,
    last_success_at TEXT,
    last_failure_at TEXT
);
