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
