-- Incremented by every change to the row. The status cache keeps only the highest version it
-- has seen, so a slow reader can never put an older state back over a newer one.
ALTER TABLE ingest_jobs ADD COLUMN version INTEGER NOT NULL DEFAULT 1;

-- How many times a worker has claimed the job. A job that keeps killing its workers is
-- failed once this passes MAX_JOB_ATTEMPTS, instead of being redelivered forever.
ALTER TABLE ingest_jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
