-- How a job's CSV file was read (what the sniffer found or the submit gave: delimiter, quote,
-- header row, skipped lines), and what its load found that a preview would not have shown.
-- json, not jsonb: kept as written, so the payload PostgreSQL writes is byte for byte Node's.
ALTER TABLE ingest_jobs ADD COLUMN dialect JSON;
ALTER TABLE ingest_jobs ADD COLUMN warnings TEXT[];
