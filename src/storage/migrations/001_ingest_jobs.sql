-- The original story's db/init.sql, unchanged.
CREATE TYPE ingest_job_status AS ENUM ('queued', 'running', 'completed', 'failed');

CREATE TABLE IF NOT EXISTS ingest_jobs (
    job_id UUID PRIMARY KEY,
    source_type VARCHAR(20) NOT NULL,
    file_name VARCHAR(255),
    status ingest_job_status NOT NULL,
    submitted_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    records_processed INTEGER NOT NULL DEFAULT 0,
    error TEXT
);

CREATE INDEX IF NOT EXISTS idx_ingest_jobs_status_submitted_at
    ON ingest_jobs (status, submitted_at DESC);
