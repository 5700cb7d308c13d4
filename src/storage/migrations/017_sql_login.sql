-- The password of the role a SQL query's connection logs in as (PostgreSQL; see
-- storage/sql-role.ts): made once, shared by every process of this Intake. Readable by
-- Intake's own user only, never by the role it lets in.
CREATE TABLE intake_sql_login (
  role_name TEXT PRIMARY KEY,
  password TEXT NOT NULL
);
