import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import {
  DatabaseUnavailableError,
  rolledBack,
  UNTRUSTED_RESET,
  type CopyData,
  type Db,
  type Queryable,
  type QueryResult,
  type TextRow,
} from './db.js';

const SOCKET_ERRORS = ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'EPIPE'];
// What node-postgres says when a connection ended, broke or could not be made: these errors
// carry no SQLSTATE.
const LOST_CONNECTION = /Connection terminated|not queryable|timeout exceeded when trying to connect/;

// "Try again later", not "bad request": a socket error or one of node-postgres's messages
// above; SQLSTATE classes 08 (connection exception), 53 (insufficient resources) and 57P
// (operator intervention: shutdown, crash, a terminated backend); and any FATAL error, which
// ends or refuses the session (e.g. 55000 "database is not currently accepting connections",
// 3D000 when the database is gone).
function isUnavailable(err: unknown): boolean {
  const { code, severity, message } = err as { code?: unknown; severity?: unknown; message?: unknown };
  if (severity === 'FATAL') return true;
  if (typeof message === 'string' && LOST_CONNECTION.test(message)) return true;
  if (typeof code !== 'string') return false;
  return SOCKET_ERRORS.includes(code) || code.startsWith('08') || code.startsWith('53') || code.startsWith('57P');
}

const INT8 = 20;

// BIGINT (counts, byte counts) as a number, as PGlite returns it, so a row has one type on both
// backends; node-postgres' default is a string. A value beyond 2^53 stays exact, as a bigint.
function getTypeParser(oid: number, format?: 'text' | 'binary'): (text: string) => unknown {
  if (oid === INT8 && format !== 'binary') {
    return (text) => {
      const n = Number(text);
      return Number.isSafeInteger(n) ? n : BigInt(text);
    };
  }
  return pg.types.getTypeParser(oid, format) as (text: string) => unknown;
}

/** A client checked out of the pool. */
interface Held {
  client: pg.PoolClient;
  /** Why the client must not go back to the pool: its connection broke, or a ROLLBACK failed. */
  broken?: Error;
}

/**
 * A failure as the caller sees it: DatabaseUnavailableError when the database is
 * unavailable, or when the connection it ran on broke (whatever error that left behind,
 * e.g. a COPY stream's).
 */
function surfaced(err: unknown, held?: Held): unknown {
  if (err instanceof DatabaseUnavailableError || !(held?.broken || isUnavailable(err))) return err;
  return new DatabaseUnavailableError(err);
}

// Runs fn on a client checked out of the pool. node-postgres emits 'error' on a client whose
// connection breaks (terminated, reset), and the pool listens only to the clients idle in
// it: one in use, with no listener of its own, would crash the process. So each is watched
// for as long as it is held, and a broken one is released with its error, which makes the
// pool discard it instead of handing it out again.
async function withClient<T>(pool: pg.Pool, fn: (held: Held) => Promise<T>): Promise<T> {
  const client = await pool.connect().catch((err: unknown) => {
    throw surfaced(err);
  });
  const held: Held = { client };
  const onError = (err: Error) => {
    held.broken ??= err;
  };
  client.on('error', onError);
  let unavailable: Error | undefined;
  try {
    return await fn(held);
  } catch (err) {
    if (err instanceof DatabaseUnavailableError) unavailable = err;
    throw err;
  } finally {
    client.removeListener('error', onError); // the pool's own listener takes over at once
    client.release(held.broken ?? unavailable);
  }
}

/** Runs one operation on a held client, its failure surfaced as the caller should see it. */
async function on<T>(held: Held, op: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  try {
    return await op(held.client);
  } catch (err) {
    throw surfaced(err, held);
  }
}

type Run = <T>(op: (client: pg.PoolClient) => Promise<T>) => Promise<T>;

async function copy(client: pg.PoolClient, sql: string, data: CopyData): Promise<number> {
  const stream = client.query(copyFrom(sql));
  await pipeline(typeof data === 'string' || data instanceof Uint8Array ? Readable.from([data]) : Readable.from(data), stream);
  return stream.rowCount ?? 0;
}

// Every parameterised query (and every queryText read) runs as a named prepared statement:
// each connection parses and plans it once, then only binds and executes it (the status and
// list reads are hot). The SQL is fixed text except a list's, which writes its LIMIT into the
// text (see listJobs): up to 100 limits for each combination of filters, several thousand
// texts in all. The first 1000 distinct texts get names and any later one runs unnamed (parsed
// and planned each time), which bounds the statements each connection keeps; the usual limits
// (the default, the console's) are named first.
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

/** The queries, each run by `run`: on a client of its own, or on a transaction's. */
function queryable(run: Run): Queryable {
  return {
    async query<R>(sql: string, params?: unknown[]): Promise<QueryResult<R>> {
      const name = params && params.length > 0 ? statementName(sql) : undefined;
      const result = await run((client) => (name ? client.query({ name, text: sql, values: params }) : client.query(sql, params)));
      return {
        rows: result.rows as R[],
        rowCount: result.rowCount ?? 0,
        get fields() {
          return result.fields.map((f) => ({ name: f.name, typeId: f.dataTypeID }));
        },
      };
    },
    async queryText(sql: string, params?: unknown[]): Promise<TextRow[]> {
      const result = await run((client) =>
        client.query<TextRow>({ name: statementName(sql), text: sql, values: params, rowMode: 'array', types: AS_TEXT }),
      );
      return result.rows;
    },
    async exec(sql: string): Promise<void> {
      // Without parameters pg uses the simple query protocol, which allows several statements.
      await run((client) => client.query(sql));
    },
    copyFrom(sql: string, data: CopyData): Promise<number> {
      return run((client) => copy(client, sql, data));
    },
  };
}

export function openPostgres(connectionString: string, poolSize: number, onError: (err: Error) => void): Db {
  const pool = new pg.Pool({ connectionString, max: poolSize, connectionTimeoutMillis: 5000, types: { getTypeParser } });
  // An idle client losing its connection must not crash the process; the pool replaces it.
  pool.on('error', onError);
  return {
    kind: 'postgres',
    connections: poolSize,
    ...queryable((op) => withClient(pool, (held) => on(held, op))),
    transaction(fn, { untrusted = false } = {}) {
      return withClient(pool, async (held) => {
        const tx = queryable((op) => on(held, op));
        await tx.exec('BEGIN');
        try {
          const result = await fn(tx);
          // A transaction with a failed statement (caught by fn) ends as a ROLLBACK: not a success.
          const ended = await on(held, (client) => client.query('COMMIT'));
          if (ended.command === 'ROLLBACK') throw rolledBack();
          return result;
        } catch (err) {
          await held.client.query('ROLLBACK').catch((rollbackErr: Error) => {
            held.broken ??= rollbackErr; // still inside the transaction: never reuse it
          });
          throw err;
        } finally {
          // A connection whose reset fails is closed rather than reused.
          if (untrusted && !held.broken)
            await held.client.query(UNTRUSTED_RESET).catch((err: Error) => {
              held.broken ??= err;
            });
        }
      });
    },
    close: () => pool.end(),
  };
}
