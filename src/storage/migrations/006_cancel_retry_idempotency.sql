-- A job stopped on request: terminal, like completed and failed. (Added inside the migration
-- transaction, which PostgreSQL 12+ allows as long as nothing here uses the new value.)
ALTER TYPE ingest_job_status ADD VALUE 'canceled';

-- attempts keeps counting every claim over retries; MAX_JOB_ATTEMPTS bounds the claims since
-- the latest retry (attempts - attempts_before_retry).
ALTER TABLE ingest_jobs ADD COLUMN attempts_before_retry INTEGER NOT NULL DEFAULT 0;

-- Idempotency-Key of a submit → the job it created, and what was submitted (a hash), so the
-- same key with another payload can be refused. Keys older than 24 hours are void.
CREATE TABLE ingest_idempotency_keys (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    job_id UUID NOT NULL REFERENCES ingest_jobs (job_id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_ingest_idempotency_keys_created_at ON ingest_idempotency_keys (created_at);

-- Retention deletes finished jobs by completion time.
CREATE INDEX idx_ingest_jobs_completed_at ON ingest_jobs (completed_at) WHERE completed_at IS NOT NULL;
