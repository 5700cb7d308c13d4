-- Schedules back off while their runs keep failing (consecutive_failures, since failing_since)
-- and are paused after a day of it; beats over the scheduled-jobs budget are deferred (counted).
ALTER TABLE intake_schedules ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE intake_schedules ADD COLUMN failing_since TIMESTAMPTZ;
ALTER TABLE intake_schedules ADD COLUMN deferred INTEGER NOT NULL DEFAULT 0;
-- The budget counts the jobs schedules made in the last minute.
CREATE INDEX ingest_jobs_scheduled_recent ON ingest_jobs (submitted_at) WHERE schedule_id IS NOT NULL;
