/**
 * The one small interface both backends implement. SQL is written once, in PostgreSQL's
 * dialect, and runs unchanged on PGlite (embedded) and on a PostgreSQL server.
 */
export interface QueryResult<R> {
  rows: R[];
  /** Rows inserted, updated or deleted (0 for a SELECT on PGlite). */
  rowCount: number;
  /** The result's columns, in order (duplicate names as they are), with each one's type OID. */
  fields?: { name: string; typeId: number }[];
}

export type TextRow = (string | null)[];

/** What a COPY … FROM STDIN reads: the whole text, or a stream of its bytes. */
export type CopyData = string | Uint8Array<ArrayBuffer> | AsyncIterable<Uint8Array>;

export interface Queryable {
  query<R = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<QueryResult<R>>;
  /**
   * A SELECT's rows as arrays of each column's text as PostgreSQL wrote it (null for NULL),
   * with no parsing and no row objects: for hot answers written straight into JSON.
   */
  queryText(sql: string, params?: unknown[]): Promise<TextRow[]>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
  /**
   * Runs `COPY table (columns) FROM STDIN` (text format) with `data` as its input: the
   * fastest way to load rows on both backends. Returns the number of rows copied.
   */
  copyFrom(sql: string, data: CopyData): Promise<number>;
}

export interface Db extends Queryable {
  readonly kind: 'pglite' | 'postgres';
  /** How many queries can run at once: the pool's size (PGlite is one connection). */
  readonly connections: number;
  /**
   * Runs fn in one transaction: committed when fn resolves, rolled back when it throws. With
   * `untrusted` (statements from outside, e.g. a SQL query's), the session is reset after it
   * (UNTRUSTED_RESET) before the connection serves anything else.
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>, options?: { untrusted?: boolean }): Promise<T>;
  close(): Promise<void>;
}

/** The database could not be reached; the API answers 503 and a worker retries later. */
export class DatabaseUnavailableError extends Error {
  constructor(cause: unknown) {
    super('Database unavailable', { cause });
    this.name = 'DatabaseUnavailableError';
  }
}

/**
 * How long a write made for an API client waits for a lock held by someone else (a worker's
 * batch or publish, a worker frozen in the middle of one) before PostgreSQL gives up with
 * SQLSTATE 55P03, which the API answers with 503 and Retry-After: a client never hangs on a lock.
 */
export const API_LOCK_TIMEOUT_MS = 2000;

/** From here to its end, this transaction waits at most API_LOCK_TIMEOUT_MS for each lock. */
export async function limitLockWait(tx: Queryable): Promise<void> {
  await tx.exec(`SET LOCAL lock_timeout = '${API_LOCK_TIMEOUT_MS}ms'`);
}

/** Runs fn in a transaction whose lock waits are bounded (see API_LOCK_TIMEOUT_MS): for the API's writes. */
export function apiTransaction<T>(db: Db, fn: (tx: Queryable) => Promise<T>): Promise<T> {
  return db.transaction(async (tx) => {
    await limitLockWait(tx);
    return fn(tx);
  });
}

/** A lock not granted within the lock_timeout (SQLSTATE 55P03). */
export function isLockTimeout(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === '55P03';
}

/** A transaction that ended as a ROLLBACK because one of its statements had failed (and fn caught it): no success. */
export const rolledBack = () => new Error('the transaction was rolled back: one of its statements had failed');

/**
 * What statements from outside could leave on a session past their transaction, undone: a
 * session's role or authorization (RESET ALL keeps them), its settings, listens and
 * session-level advisory locks (Intake takes none: any is theirs). Not DISCARD ALL: it would
 * drop the statements Intake keeps prepared on the connection.
 */
export const UNTRUSTED_RESET = 'RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL; UNLISTEN *; SELECT pg_advisory_unlock_all()';
