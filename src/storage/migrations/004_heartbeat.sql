-- When the worker holding a running job last showed progress (its claim, then each batch).
-- A running row with a recent heartbeat has a live worker: it is neither re-enqueued by the
-- reconciler nor claimed (and counted as an attempt) by a second worker.
ALTER TABLE ingest_jobs ADD COLUMN heartbeat_at TIMESTAMPTZ;
