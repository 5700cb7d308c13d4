import { createHash, randomBytes } from 'node:crypto';
import type { Db, Queryable } from './db.js';
import { LOCK_KEYS } from '../core/lock-keys.js';
import { openPostgres } from './postgres.js';

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
  /**
   * PostgreSQL: connections logged in as a role of this database's own (sqlLoginRole), a
   * member of `role` and of nothing else. A role switched to can be switched back from (by
   * set_config('role', …), when the connecting user is a superuser, to any role): a query
   * that got past the guard to such a call would undo the wall. Logged in as the role, there
   * is no other role to switch to. Unless it could not be made (then `sessionReason` says why).
   */
  session?: Db;
  sessionReason?: string;
}

/** The role exists with rights beyond reading (made by someone else): it is no wall. */
class RoleTooBroad extends Error {}

// temp_file_limit is a superuser's setting: set on the login role (by a superuser), or in the
// query's transaction before the switch to the role.
export const TEMP_FILE_LIMIT = '1GB';

// Connections of the login role: the queries (2) and exports of queries (4) a process runs at once.
const LOGIN_POOL = 6;

/** The login role of the database named `database`: one per database, as its password is kept in it. */
export function sqlLoginRole(database: string): string {
  return `${SQL_ROLE}_${createHash('sha256').update(database).digest('hex').slice(0, 12)}`;
}

/**
 * Makes (or updates) the login role and opens its connections: its password made once and kept
 * in intake_sql_login, which only Intake's user can read.
 */
async function openLogin(db: Db, superuser: boolean, databaseUrl: string, onError: (err: Error) => void): Promise<Db> {
  const { name, password } = await db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEYS.migrations]);
    const [{ database }] = (await tx.query<{ database: string }>('SELECT current_database() AS database')).rows as [{ database: string }];
    const name = sqlLoginRole(database);
    let password = (await tx.query<{ password: string }>('SELECT password FROM intake_sql_login WHERE role_name = $1', [name])).rows[0]
      ?.password;
    if (!password) {
      password = randomBytes(24).toString('hex');
      await tx.query('INSERT INTO intake_sql_login (role_name, password) VALUES ($1, $2)', [name, password]);
    }
    const [existing] = (
      await tx.query<{ broad: boolean }>(
        `SELECT r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls
                OR EXISTS (SELECT FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid AND g.rolname <> $2) AS broad
           FROM pg_roles r WHERE r.rolname = $1`,
        [name, SQL_ROLE],
      )
    ).rows;
    if (existing?.broad) throw new RoleTooBroad(`the role ${name} exists with more rights than ${SQL_ROLE}'s`);
    await tx.exec(`${existing ? 'ALTER' : 'CREATE'} ROLE ${name} LOGIN INHERIT PASSWORD '${password}';
      GRANT ${SQL_ROLE} TO ${name};
      ${superuser ? `ALTER ROLE ${name} SET temp_file_limit = '${TEMP_FILE_LIMIT}'` : `GRANT ${name} TO CURRENT_USER`}`);
    // (A user who is not a superuser may end an export's session, as a publish must, only as a member of its role.)
    return { name, password };
  });
  const url = new URL(databaseUrl);
  url.searchParams.delete('user');
  url.searchParams.delete('password');
  url.username = name;
  url.password = password;
  const session = openPostgres(url.toString(), LOGIN_POOL, onError);
  try {
    const [who] = (await session.query<{ who: string }>('SELECT session_user AS who')).rows;
    if (who?.who !== name) throw new Error(`logged in as ${who?.who}, not ${name}`);
  } catch (err) {
    await session.close().catch(() => {});
    throw err;
  }
  return session;
}

/**
 * Makes the role (when this user may) and grants it the dataset schema: its tables now and
 * those made later. Answers the role, or why queries run as the connecting user instead.
 */
export async function ensureSqlRole(
  db: Db,
  schema: string,
  login?: { databaseUrl: string; onError: (err: Error) => void },
): Promise<SqlRole> {
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
    if (db.kind !== 'postgres' || !login) return { role: SQL_ROLE, superuser };
    try {
      return { role: SQL_ROLE, superuser, session: await openLogin(db, superuser, login.databaseUrl, login.onError) };
    } catch (err) {
      // Refused by the server (its pg_hba, this user's rights): queries switch to the role instead.
      return { role: SQL_ROLE, superuser, sessionReason: (err as Error).message };
    }
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
