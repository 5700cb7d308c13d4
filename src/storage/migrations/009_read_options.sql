-- How a job's stored file is read, as its submit said (CSV: delimiter, header); NULL: the
-- defaults (the delimiter detected, a header row).
ALTER TABLE ingest_jobs ADD COLUMN read_options JSONB;
