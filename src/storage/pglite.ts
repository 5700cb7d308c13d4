import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite, types } from '@electric-sql/pglite';
import { acquireLock } from './data-dir-lock.js';
import { pgliteOptions } from './pglite-options.js';
import type { Db, Queryable, QueryResult, TextRow } from './db.js';

// Every type PGlite would parse, parsed as "keep the text" instead (see Queryable.queryText).
const AS_TEXT = Object.fromEntries(Object.keys(types.parsers).map((oid) => [oid, (text: string) => text]));

function wrap(conn: Pick<PGlite, 'query' | 'exec'>): Queryable {
  return {
    async query<R>(sql: string, params?: unknown[]): Promise<QueryResult<R>> {
      const result = await conn.query<R>(sql, params);
      return { rows: result.rows, rowCount: result.affectedRows ?? 0 };
    },
    async queryText(sql: string, params?: unknown[]): Promise<TextRow[]> {
      const result = await conn.query<TextRow>(sql, params, { rowMode: 'array', parsers: AS_TEXT });
      return result.rows;
    },
    async exec(sql: string): Promise<void> {
      await conn.exec(sql);
    },
    async copyFrom(sql: string, data: string | Uint8Array<ArrayBuffer>): Promise<number> {
      // PGlite has no COPY protocol stream: its COPY reads a virtual file given as a Blob.
      const result = await conn.query(sql.replace(/FROM STDIN\b/, "FROM '/dev/blob'"), [], { blob: new Blob([data]) });
      return result.affectedRows ?? 0;
    },
  };
}

/** Opens (creating on first use) the embedded database in dataDir/pgdata. */
export async function openPglite(dataDir: string): Promise<Db> {
  mkdirSync(dataDir, { recursive: true });
  const releaseLock = acquireLock(dataDir);
  let pg: PGlite;
  try {
    pg = await PGlite.create(join(dataDir, 'pgdata'), pgliteOptions());
  } catch (err) {
    releaseLock();
    throw err;
  }
  const queryable = wrap(pg);
  return {
    kind: 'pglite',
    connections: 1,
    ...queryable,
    // PGlite is one connection; its transaction() holds a mutex, so other queries wait.
    transaction: (fn) => pg.transaction((tx) => fn(wrap(tx))),
    async close() {
      try {
        await pg.close(); // checkpoints, so the directory is consistent without WAL replay
      } finally {
        releaseLock();
      }
    },
  };
}
