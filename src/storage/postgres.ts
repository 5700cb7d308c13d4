import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { DatabaseUnavailableError, type Db, type Queryable, type QueryResult, type TextRow } from './db.js';

// SQLSTATE classes 08 (connection exception), 53 (insufficient resources) and 57P
// (operator intervention: shutdown, crash) mean "try again later", not "bad request"; so does
// any FATAL error, which ends or refuses the session (e.g. 55000 "database is not currently
// accepting connections", 3D000 when the database is gone).
function isUnavailable(err: unknown): boolean {
  const { code, severity } = err as { code?: unknown; severity?: unknown };
  if (severity === 'FATAL') return true;
  if (typeof code !== 'string') return false;
  return (
    ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'EPIPE'].includes(code) ||
    code.startsWith('08') ||
    code.startsWith('53') ||
    code.startsWith('57P')
  );
}

function translate(err: unknown): never {
  if (isUnavailable(err) || (err instanceof Error && /Connection terminated|timeout exceeded when trying to connect/.test(err.message))) {
    throw new DatabaseUnavailableError(err);
  }
  throw err;
}

async function copy(conn: pg.Pool | pg.PoolClient, sql: string, data: string): Promise<number> {
  const client = conn instanceof pg.Pool ? await conn.connect() : conn;
  try {
    const stream = client.query(copyFrom(sql));
    await pipeline(Readable.from([data]), stream);
    return stream.rowCount ?? 0;
  } finally {
    if (conn instanceof pg.Pool) (client as pg.PoolClient).release();
  }
}

// Every parameterised query (and every queryText read) runs as a named prepared statement:
// each connection parses and plans it once, then only binds and executes it (the status and
// list reads are hot). The SQL is fixed text, so the names are few; the cap only guards
// against a mistake.
const statementNames = new Map<string, string>();
function statementName(sql: string): string | undefined {
  let name = statementNames.get(sql);
  if (!name && statementNames.size < 1000) {
    name = `intake_${statementNames.size + 1}`;
    statementNames.set(sql, name);
  }
  return name;
}

// Every column as the text PostgreSQL sent: no parser runs (see Queryable.queryText).
const AS_TEXT = { getTypeParser: () => (text: string) => text };

function wrap(conn: pg.Pool | pg.PoolClient): Queryable {
  return {
    async query<R>(sql: string, params?: unknown[]): Promise<QueryResult<R>> {
      try {
        const name = params && params.length > 0 ? statementName(sql) : undefined;
        const result = name ? await conn.query({ name, text: sql, values: params }) : await conn.query(sql, params);
        return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 };
      } catch (err) {
        translate(err);
      }
    },
    async queryText(sql: string, params?: unknown[]): Promise<TextRow[]> {
      try {
        const result = await conn.query<TextRow>({ name: statementName(sql), text: sql, values: params, rowMode: 'array', types: AS_TEXT });
        return result.rows;
      } catch (err) {
        translate(err);
      }
    },
    async exec(sql: string): Promise<void> {
      // Without parameters pg uses the simple query protocol, which allows several statements.
      await conn.query(sql).catch(translate);
    },
    async copyFrom(sql: string, data: string): Promise<number> {
      return copy(conn, sql, data).catch(translate);
    },
  };
}

export function openPostgres(connectionString: string, poolSize: number, onError: (err: Error) => void): Db {
  const pool = new pg.Pool({ connectionString, max: poolSize, connectionTimeoutMillis: 5000 });
  // An idle client losing its connection must not crash the process; the pool replaces it.
  pool.on('error', onError);
  const queryable = wrap(pool);
  return {
    kind: 'postgres',
    connections: poolSize,
    ...queryable,
    async transaction(fn) {
      const client = await pool.connect().catch(translate);
      try {
        await client.query('BEGIN');
        const result = await fn(wrap(client));
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        if (isUnavailable(err)) throw new DatabaseUnavailableError(err);
        throw err;
      } finally {
        client.release();
      }
    },
    close: () => pool.end(),
  };
}
