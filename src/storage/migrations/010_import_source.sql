-- The URL an import reads (https://… or s3://bucket/key), read again by each run and retry;
-- NULL for uploads and posted records, whose bytes are stored.
ALTER TABLE ingest_jobs ADD COLUMN source_url TEXT;
