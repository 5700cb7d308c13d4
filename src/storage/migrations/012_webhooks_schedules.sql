-- Completion webhooks: each job's terminal state makes one delivery per receiving URL (the
-- WEBHOOK_URLS and the job's callback_url), written in the transaction that ends the job, so
-- none is lost to a restart. A delivery is attempted by one process at a time (lease_until).
ALTER TABLE ingest_jobs ADD COLUMN callback_url TEXT;
CREATE TABLE intake_webhook_deliveries (
    delivery_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id UUID NOT NULL,
    job_version INTEGER NOT NULL,
    event TEXT NOT NULL,
    url TEXT NOT NULL,
    -- callback: a submit's callback_url, held to the address rule of imports; config: WEBHOOK_URLS.
    origin TEXT NOT NULL CHECK (origin IN ('callback', 'config')),
    body TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_until TIMESTAMPTZ,
    delivered_at TIMESTAMPTZ,
    last_error TEXT
);
CREATE INDEX intake_webhook_deliveries_due ON intake_webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX intake_webhook_deliveries_job ON intake_webhook_deliveries (job_id);
CREATE TABLE intake_webhook_attempts (
    delivery_id BIGINT NOT NULL REFERENCES intake_webhook_deliveries ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    duration_ms INTEGER NOT NULL,
    status_code INTEGER,
    error TEXT,
    response TEXT,
    PRIMARY KEY (delivery_id, attempt)
);

-- Schedules: an import run every every_ms. The jobs a schedule made name it.
CREATE TABLE intake_schedules (
    schedule_id UUID PRIMARY KEY,
    import JSONB NOT NULL,
    every TEXT NOT NULL,
    every_ms BIGINT NOT NULL,
    paused BOOLEAN NOT NULL DEFAULT false,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    next_run_at TIMESTAMPTZ NOT NULL,
    last_run_at TIMESTAMPTZ,
    last_job_id UUID,
    last_error TEXT,
    runs INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0
);
ALTER TABLE ingest_jobs ADD COLUMN schedule_id UUID;
CREATE INDEX ingest_jobs_schedule ON ingest_jobs (schedule_id, submitted_at DESC) WHERE schedule_id IS NOT NULL;
