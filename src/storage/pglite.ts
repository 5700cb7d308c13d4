import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import type { Db, Queryable, QueryResult } from './db.js';

export class DataDirLockedError extends Error {
  constructor(dataDir: string, pid: number) {
    super(
      `DATA_DIR ${dataDir} is in use by another Intake process (pid ${pid}). ` +
        'Embedded mode allows one process per data directory: stop that process, ' +
        'or set DATA_DIR to another directory, or use DATABASE_URL for several processes.',
    );
    this.name = 'DataDirLockedError';
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * PGlite takes no lock of its own, and two processes writing one data directory corrupt it.
 * The lock file holds the owner's pid; a file left by a dead process (kill -9) is taken over.
 */
function acquireLock(dataDir: string): () => void {
  const lockPath = join(dataDir, 'intake.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockPath, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(lockPath, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number.parseInt(readFileSync(lockPath, 'utf8'), 10);
      if (Number.isInteger(owner) && owner > 0 && isAlive(owner)) {
        throw new DataDirLockedError(dataDir, owner);
      }
      rmSync(lockPath, { force: true }); // stale: its owner is gone
    }
  }
  throw new Error(`could not take the lock ${lockPath}`);
}

function wrap(conn: Pick<PGlite, 'query' | 'exec'>): Queryable {
  return {
    async query<R>(sql: string, params?: unknown[]): Promise<QueryResult<R>> {
      const result = await conn.query<R>(sql, params);
      return { rows: result.rows, rowCount: result.affectedRows ?? 0 };
    },
    async exec(sql: string): Promise<void> {
      await conn.exec(sql);
    },
    async copyFrom(sql: string, data: string): Promise<number> {
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
    pg = await PGlite.create(join(dataDir, 'pgdata'));
  } catch (err) {
    releaseLock();
    throw err;
  }
  const queryable = wrap(pg);
  return {
    kind: 'pglite',
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
