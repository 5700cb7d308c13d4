-- What a running job is doing: reading its input, or publishing its rows into the dataset
-- (NULL once it has ended, and while it is queued).
ALTER TABLE ingest_jobs ADD COLUMN phase VARCHAR(20);
UPDATE ingest_jobs SET phase = 'reading' WHERE status = 'running';
