-- How the stored upload is parsed: csv, json (array or {"records": [...]}) or ndjson.
ALTER TABLE ingest_jobs ADD COLUMN format VARCHAR(10) NOT NULL DEFAULT 'csv';
ALTER TABLE ingest_jobs ALTER COLUMN format DROP DEFAULT;

-- Every ingested record, numbered from 0 in file order. The primary key makes a record
-- written twice an error rather than a silent duplicate.
CREATE TABLE ingest_records (
    job_id UUID NOT NULL REFERENCES ingest_jobs (job_id) ON DELETE CASCADE,
    record_no INTEGER NOT NULL,
    data JSONB NOT NULL,
    PRIMARY KEY (job_id, record_no)
);
