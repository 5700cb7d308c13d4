import type { Db, Queryable } from './db.js';
import { LOCK_KEYS } from '../core/lock-keys.js';

/**
 * The role POST /api/sql queries run as: the second wall behind the SQL guard
 * (datasets/sql-guard.ts), one that does not depend on the parser. It can read the tables of
 * the dataset schema and nothing else of Intake's: no job, record, connection or stage, no
 * server file or setting a superuser could read, and the catalog views show it only what they
 * show any unprivileged role (pg_stats no column it cannot read, pg_stat_activity no other
 * session's query). NOLOGIN: it is only ever switched to, with SET LOCAL ROLE inside the
 * query's READ ONLY transaction. A role is the cluster's, not one database's: Intakes on other
 * databases of the same server share it, each granting it its own dataset schema.
 */
export const SQL_ROLE = 'intake_sql';

export interface SqlRole {
  /** The role to switch to, unless it could not be made or used (then `reason` says why). */
  role?: string;
  reason?: string;
  /** Whether the connecting user is a superuser: only a superuser may set temp_file_limit. */
  superuser: boolean;
}

/** The role exists with rights beyond reading (made by someone else): it is no wall. */
class RoleTooBroad extends Error {}

/**
 * Makes the role (when this user may) and grants it the dataset schema: its tables now and
 * those made later. Answers the role, or why queries run as the connecting user instead.
 */
export async function ensureSqlRole(db: Db, schema: string): Promise<SqlRole> {
  const [{ superuser }] = (
    await db.query<{ superuser: boolean }>('SELECT rolsuper AS superuser FROM pg_roles WHERE rolname = current_user')
  ).rows as [{ superuser: boolean }];
  try {
    await db.transaction(async (tx) => {
      // Processes of one Intake starting together would race on the grants.
      await tx.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEYS.migrations]);
      // Intakes starting together on one server race on the cluster-wide name: either loses
      // with duplicate_object or, mid-insert, unique_violation.
      await tx.exec(`DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${SQL_ROLE}') THEN CREATE ROLE ${SQL_ROLE} NOLOGIN; END IF;
      EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
      END $$`);
      const [role] = (
        await tx.query<{ broad: boolean; member: boolean }>(
          `SELECT r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls OR r.rolcanlogin
                  OR EXISTS (SELECT FROM pg_auth_members m WHERE m.member = r.oid) AS broad,
                  pg_has_role(current_user, r.oid, 'MEMBER') AS member
             FROM pg_roles r WHERE r.rolname = $1`,
          [SQL_ROLE],
        )
      ).rows;
      // Made by someone else with more than it needs: running as it would be no wall.
      if (!role || role.broad)
        throw new RoleTooBroad(
          `the role ${SQL_ROLE} exists with more rights than reading (it can log in, is a superuser or a member of another role)`,
        );
      // A user who is not a superuser may switch only to a role it is a member of.
      if (!superuser && !role.member) await tx.exec(`GRANT ${SQL_ROLE} TO CURRENT_USER`);
      await grantSchema(tx, schema);
    });
    // Proves the switch works for this user, as each query will make it.
    await db.transaction((tx) => tx.exec(`SET TRANSACTION READ ONLY; SET LOCAL ROLE ${SQL_ROLE}`));
    return { role: SQL_ROLE, superuser };
  } catch (err) {
    // Only what this user may not do falls back; anything else fails the start, as a migration would.
    if (err instanceof RoleTooBroad || (err as { code?: unknown }).code === '42501') return { reason: (err as Error).message, superuser };
    throw err;
  }
}

async function grantSchema(tx: Queryable, schema: string): Promise<void> {
  await tx.exec(`GRANT USAGE ON SCHEMA "${schema}" TO ${SQL_ROLE};
    GRANT SELECT ON ALL TABLES IN SCHEMA "${schema}" TO ${SQL_ROLE};
    ALTER DEFAULT PRIVILEGES IN SCHEMA "${schema}" GRANT SELECT ON TABLES TO ${SQL_ROLE}`);
}
