-- Connections to the sources Intake pulls from (Jira), with their secret sealed by SECRET_KEY
-- (AES-256-GCM, see src/secrets.ts): never stored or returned in clear.
CREATE TABLE intake_connections (
    id UUID PRIMARY KEY,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    base_url TEXT NOT NULL,
    email TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- What a pulling job reads ({"jira": {"connection": id, "jql": …}}), and each Jira sync's
-- high-water mark: the newest `updated` (epoch ms) its last completed run saw.
ALTER TABLE ingest_jobs ADD COLUMN source JSONB;
CREATE TABLE intake_jira_marks (
    connection_id UUID NOT NULL,
    jql TEXT NOT NULL,
    dataset TEXT NOT NULL,
    mark_ms BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (connection_id, jql, dataset)
);
