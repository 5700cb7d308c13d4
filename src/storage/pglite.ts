import { closeSync, existsSync, fdatasyncSync, mkdirSync, openSync, readdirSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { PGlite, types, type PGliteOptions } from '@electric-sql/pglite';
import { NodeFS } from '@electric-sql/pglite/nodefs';
import { acquireLock } from './data-dir-lock.js';
import { pgliteOptions } from './pglite-options.js';
import { rolledBack, UNTRUSTED_RESET, type CopyData, type Db, type Queryable, type QueryResult, type TextRow } from './db.js';

// Every type PGlite would parse, parsed as "keep the text" instead (see Queryable.queryText).
const AS_TEXT = Object.fromEntries(Object.keys(types.parsers).map((oid) => [oid, (text: string) => text]));

function wrap(conn: Pick<PGlite, 'query' | 'exec'>): Queryable {
  return {
    async query<R>(sql: string, params?: unknown[]): Promise<QueryResult<R>> {
      const result = await conn.query<R>(sql, params);
      return {
        rows: result.rows,
        rowCount: result.affectedRows ?? 0,
        get fields() {
          return result.fields.map((f) => ({ name: f.name, typeId: f.dataTypeID }));
        },
      };
    },
    async queryText(sql: string, params?: unknown[]): Promise<TextRow[]> {
      const result = await conn.query<TextRow>(sql, params, { rowMode: 'array', parsers: AS_TEXT });
      return result.rows;
    },
    async exec(sql: string): Promise<void> {
      await conn.exec(sql);
    },
    async copyFrom(sql: string, data: CopyData): Promise<number> {
      // PGlite has no COPY protocol stream: its COPY reads a virtual file given as a Blob (whole).
      const parts: (string | Uint8Array)[] = [];
      if (typeof data === 'string' || data instanceof Uint8Array) parts.push(data);
      else for await (const chunk of data) parts.push(chunk);
      const result = await conn.query(sql.replace(/FROM STDIN\b/, "FROM '/dev/blob'"), [], { blob: new Blob(parts as BlobPart[]) });
      return result.affectedRows ?? 0;
    },
  };
}

/** What of Emscripten's NODEFS is touched here: a file's stream operations. */
interface NodeFsOperations {
  stream_ops: { fsync?: (stream: { nfd?: number }) => number };
}

const PAGE = 64 * 1024; // a WebAssembly memory page
// What PGlite's module starts with (its INITIAL_MEMORY), shared_buffers included (pglite-options.ts).
const INITIAL_MEMORY = 128 * 1024 ** 2;

/**
 * The embedded PostgreSQL's storage and memory. Its memory is one WebAssembly memory, which
 * only grows (never given back) and, left to itself, up to 2 GB: one query gathering a large
 * value (string_agg over many rows) left the process at 1.29 GB for good. With a maximum, a
 * statement that needs more fails with PostgreSQL's "out of memory" (53200) and PGlite carries
 * on; loads stay within the initial 128 MB (PostgreSQL's sorts and hashes spill to disk).
 * And PGlite's Node filesystem (Emscripten's NODEFS) has no fsync: PostgreSQL's flush of the
 * WAL at commit returned at once and nothing reached the disk until the kernel wrote it back.
 * With `durable`, a flush reaches the disk for real. (Emscripten's fdatasync() does nothing
 * at all, so PostgreSQL is told to use fsync(), which reaches here.)
 */
class EmbeddedFS extends NodeFS {
  constructor(
    dataDir: string,
    private readonly settings: { durable: boolean; maxMemoryBytes: number },
  ) {
    super(dataDir);
  }

  override async init(pg: PGlite, emscriptenOptions: Parameters<NodeFS['init']>[1]) {
    const result = await super.init(pg, emscriptenOptions);
    const maximum = Math.max(INITIAL_MEMORY, this.settings.maxMemoryBytes);
    (result.emscriptenOpts as { wasmMemory?: WebAssembly.Memory }).wasmMemory = new WebAssembly.Memory({
      initial: INITIAL_MEMORY / PAGE,
      maximum: Math.floor(maximum / PAGE),
    });
    if (!this.settings.durable) return result;
    const flush = (mod: { NODEFS: unknown }) => {
      (mod.NODEFS as NodeFsOperations).stream_ops.fsync = (stream) => {
        if (stream.nfd !== undefined) fdatasyncSync(stream.nfd);
        return 0;
      };
    };
    result.emscriptenOpts.preRun = [flush, ...(result.emscriptenOpts.preRun ?? [])];
    return result;
  }
}

/** fdatasync every file and folder under dir (what initdb wrote was never flushed). */
function flushTree(dir: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) flushTree(join(dir, entry.name));
    else if (entry.isFile()) flushPath(join(dir, entry.name));
  }
  flushPath(dir);
}

function flushPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

const INITDB = fileURLToPath(new URL('./pglite-initdb.mjs', import.meta.url));

async function initdb(pgdata: string, options: PGliteOptions): Promise<void> {
  const { startParams, initDbStartParams } = options;
  try {
    await promisify(execFile)(process.execPath, [INITDB, pgdata, JSON.stringify({ startParams, initDbStartParams })]);
  } catch (err) {
    const { stderr } = err as { stderr?: string };
    throw new Error(`could not create the embedded database in ${pgdata}: ${stderr?.trim() || (err as Error).message}`, { cause: err });
  }
}

/**
 * Opens (creating on first use) the embedded database in dataDir/pgdata. With fsync (the
 * default) a commit is on disk when it returns, as on PostgreSQL; without, the last commits
 * before a power failure (not a crash of Intake) can be lost, for faster small commits.
 */
export async function openPglite(
  dataDir: string,
  { fsync = true, maxMemoryBytes = 512 * 1024 ** 2 }: { fsync?: boolean; maxMemoryBytes?: number } = {},
): Promise<Db> {
  mkdirSync(dataDir, { recursive: true });
  const releaseLock = acquireLock(dataDir);
  const pgdata = join(dataDir, 'pgdata');
  const created = !existsSync(join(pgdata, 'PG_VERSION'));
  let pg: PGlite;
  try {
    const options = pgliteOptions();
    if (created) await initdb(pgdata, options);
    const startParams = options.startParams ?? PGlite.defaultStartParams;
    const fs = new EmbeddedFS(pgdata, { durable: fsync, maxMemoryBytes });
    const storage: PGliteOptions = fsync
      ? // PGlite starts PostgreSQL with -F (fsync off).
        { fs, startParams: [...startParams.filter((param) => param !== '-F'), '-c', 'fsync=on', '-c', 'wal_sync_method=fsync'] }
      : { fs };
    pg = await PGlite.create({ ...options, ...storage });
    if (fsync && created) flushTree(pgdata);
  } catch (err) {
    releaseLock();
    throw err;
  }
  const queryable = wrap(pg);
  return {
    kind: 'pglite',
    connections: 1,
    ...queryable,
    // PGlite is one connection; its transaction() holds a mutex, so other queries wait. It
    // rolls back only when fn fails: a COMMIT that failed (an internal error of PostgreSQL's,
    // e.g. after a query nested past what PGlite's stack holds) left that one connection in
    // the failed transaction, every later statement refused until a restart. So the COMMIT (or
    // the ROLLBACK) is made here, and then, for an untrusted transaction, the session reset,
    // still inside the mutex (PGlite's own COMMIT or ROLLBACK after it only warns).
    transaction: (fn, { untrusted = false } = {}) =>
      pg.transaction(async (tx) => {
        const reset = async () => {
          if (untrusted) await tx.exec(UNTRUSTED_RESET);
        };
        let result;
        let ended: string | undefined;
        try {
          result = await fn(wrap(tx));
          ended = (await tx.exec('COMMIT'))[0]?.command;
        } catch (err) {
          await tx.exec('ROLLBACK').catch(() => {});
          await reset();
          throw err;
        }
        await reset();
        // A transaction with a failed statement (caught by fn) ends as a ROLLBACK, as PGlite's COMMIT would say.
        if (ended === 'ROLLBACK') throw rolledBack();
        return result;
      }),
    async close() {
      try {
        await pg.close(); // checkpoints, so the directory is consistent without WAL replay
      } finally {
        releaseLock();
      }
    },
  };
}
