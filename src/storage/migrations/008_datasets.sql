-- Datasets: every job loads into a typed table <DATASET_SCHEMA>.<dataset>. Jobs from before
-- this migration keep their records in ingest_records (dataset NULL) and stay readable there.
ALTER TABLE ingest_jobs ADD COLUMN dataset TEXT;
-- append | replace | merge; merge_key names the key columns of a merge.
ALTER TABLE ingest_jobs ADD COLUMN mode TEXT;
ALTER TABLE ingest_jobs ADD COLUMN merge_key TEXT[];
-- The types a submit declared (column → type), and whether the job may widen existing columns.
ALTER TABLE ingest_jobs ADD COLUMN declared_types JSONB;
ALTER TABLE ingest_jobs ADD COLUMN widen BOOLEAN NOT NULL DEFAULT FALSE;
-- What a running job has learnt of its input (columns, their original names, the types seen
-- so far), committed with each batch: a resumed run goes on from it.
ALTER TABLE ingest_jobs ADD COLUMN load_state JSONB;
-- The jobs that wrote a dataset, newest first (GET /api/jobs?dataset=...).
CREATE INDEX idx_ingest_jobs_dataset_submitted_at_job_id ON ingest_jobs (dataset, submitted_at DESC, job_id DESC) WHERE dataset IS NOT NULL;
-- What a completed job did to its dataset.
ALTER TABLE ingest_jobs ADD COLUMN rows_inserted BIGINT;
ALTER TABLE ingest_jobs ADD COLUMN rows_updated BIGINT;

-- The datasets Intake has made, and their columns' names as the inputs wrote them. The tables
-- themselves are the truth about columns and types. row_count is kept by each load.
CREATE TABLE intake_datasets (
    name TEXT PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    row_count BIGINT NOT NULL DEFAULT 0,
    last_job_id UUID
);
CREATE TABLE intake_dataset_columns (
    dataset TEXT NOT NULL REFERENCES intake_datasets (name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    original_name TEXT NOT NULL,
    PRIMARY KEY (dataset, name)
);

-- A running job's rows wait here, one table per job, until it completes.
CREATE SCHEMA IF NOT EXISTS intake_stage;
