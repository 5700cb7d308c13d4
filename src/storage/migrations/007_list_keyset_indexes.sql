-- The jobs list pages newest first by (submitted_at, job_id), with or without a status filter:
-- these two indexes let a keyset page start at its cursor at any depth. They cover what the
-- story's (status, submitted_at DESC) index served, which is dropped to spare every write.
CREATE INDEX idx_ingest_jobs_submitted_at_job_id ON ingest_jobs (submitted_at DESC, job_id DESC);
CREATE INDEX idx_ingest_jobs_status_submitted_at_job_id ON ingest_jobs (status, submitted_at DESC, job_id DESC);
DROP INDEX idx_ingest_jobs_status_submitted_at;
