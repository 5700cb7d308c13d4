-- Row-level errors: a bad row (wrong number of fields, invalid JSON, not an object) is kept
-- here instead of failing the job, up to the job's max_errors. record_no is the row's
-- position among the input's records, as in ingest_records: together they number every
-- record of the input once.
CREATE TABLE ingest_errors (
    job_id UUID NOT NULL REFERENCES ingest_jobs (job_id) ON DELETE CASCADE,
    record_no INTEGER NOT NULL,
    line INTEGER NOT NULL,
    message TEXT NOT NULL,
    excerpt TEXT NOT NULL,
    PRIMARY KEY (job_id, record_no)
);

-- records_processed + records_failed is the checkpoint: the input position a resumed job
-- continues from.
ALTER TABLE ingest_jobs ADD COLUMN records_failed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ingest_jobs ADD COLUMN max_errors INTEGER NOT NULL DEFAULT 0;

-- Byte progress, for a progress bar before the record count is known.
ALTER TABLE ingest_jobs ADD COLUMN bytes_total BIGINT;
ALTER TABLE ingest_jobs ADD COLUMN bytes_processed BIGINT NOT NULL DEFAULT 0;
