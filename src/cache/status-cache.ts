import type { FastifyBaseLogger } from 'fastify';
import type { Redis } from 'ioredis';
import { batchReads } from '../batch.js';

/**
 * The Redis status cache: `ingest_job:{job_id}` holds the job payload as JSON, exactly the
 * bytes the API answers with. Freshness comes from writers, not the TTL: every committed
 * change is written through with its version, and a write only lands if it is newer than
 * what the key holds, so a slow reader filling the key after a miss can never put an older
 * state back. Any Redis error is a miss; the caller reads the database instead.
 */
export interface StatusCache {
  get(jobId: string): Promise<string | null>;
  /**
   * Writes a committed change through: stores the payload unless the key already holds this
   * version or a newer one. A write that fails marks the key for repair from the database.
   */
  store(jobId: string, version: number, payload: string): Promise<void>;
  /**
   * Fills the key after a miss, with what the database answered, unless it holds this version
   * or a newer one. Best effort: skipping a fill leaves no key staler than it was.
   */
  fill(jobId: string, version: number, payload: string): Promise<void>;
  /** The job was deleted: its key answers as a miss from now on, and no late write lands on it. */
  forget(jobId: string): Promise<void>;
  /** PING on the cache's own fail-fast connection: /readyz asks it rather than opening one. */
  ping(): Promise<void>;
  readonly stats: CacheStats;
  close(): Promise<void>;
}

// What a deleted job's key holds until it expires: a version no write can beat, so a worker's
// change committed before the delete but written after it cannot bring the job back.
const DELETED = `{"deleted":true,"version":${Number.MAX_SAFE_INTEGER}}`;

export interface CacheStats {
  /** Every get(), answered from Redis or not (breaker open, Redis error): /metrics counts misses as reads - hits. */
  reads: number;
  hits: number;
  misses: number;
  errors: number;
}

// KEYS[1] key; ARGV[1] version, ARGV[2] payload, ARGV[3] ttl in ms. Returns 1 if stored.
const STORE_IF_NEWER = `
local current = redis.call('GET', KEYS[1])
if current then
  local version = tonumber(string.match(current, '"version":(%d+)'))
  if version and version >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`;

// After an error, Redis is skipped for this long, so a hung server costs one timeout, not one per request.
const BREAKER_MS = 1000;

export interface StatusCacheOptions {
  prefix: string;
  ttlSeconds: number;
  log: FastifyBaseLogger;
  /** The job's current payload from the database (null if gone), to repair its key. */
  load(jobId: string): Promise<{ version: number; payload: string } | null>;
}

export function createStatusCache(redis: Redis, options: StatusCacheOptions): StatusCache & { stats: CacheStats } {
  const { prefix, log } = options;
  const ttlMs = options.ttlSeconds * 1000;
  const key = (jobId: string) => `${prefix}ingest_job:${jobId}`;
  redis.defineCommand('intakeStoreIfNewer', { numberOfKeys: 1, lua: STORE_IF_NEWER });
  const stats: CacheStats = { reads: 0, hits: 0, misses: 0, errors: 0 };
  let skipUntil = 0;
  // Jobs whose latest change could not be written: their keys may hold an older state, so
  // they are deleted as soon as Redis answers again.
  const dirty = new Set<string>();

  function failed(err: unknown, jobId?: string): void {
    stats.errors++;
    if (jobId) dirty.add(jobId);
    if (Date.now() >= skipUntil) log.warn({ err: (err as Error).message }, 'status cache unavailable; using the database');
    skipUntil = Date.now() + BREAKER_MS;
    scheduleRepair();
  }

  // A write that timed out (a slow, not a lost, Redis) brings no 'ready' event, and a worker
  // whose job has ended writes nothing more: without this timer its key could show an old
  // state until the TTL. Tried again after each breaker period while keys are dirty.
  let repairTimer: NodeJS.Timeout | undefined;
  function scheduleRepair(): void {
    if (repairTimer || dirty.size === 0) return;
    repairTimer = setTimeout(() => {
      repairTimer = undefined;
      skipUntil = 0;
      repair().catch((err: unknown) => failed(err));
    }, BREAKER_MS);
    repairTimer.unref();
  }

  // Rewrites the keys of jobs whose change could not be written, from the database: a key is
  // left holding the latest version (not deleted), so a slow reader's older payload still
  // cannot land on it afterwards. In the background, one pass at a time: until a key is
  // repaired, get() answers it as a miss.
  let repairing: Promise<void> | undefined;
  function repair(): Promise<void> {
    repairing ??= (async () => {
      for (const jobId of [...dirty]) {
        const latest = await options.load(jobId);
        if (latest) await storeIfNewer(jobId, latest.version, latest.payload);
        else await redis.set(key(jobId), DELETED, 'PX', ttlMs);
        dirty.delete(jobId);
      }
    })().finally(() => (repairing = undefined));
    return repairing;
  }

  function storeIfNewer(jobId: string, version: number, payload: string): Promise<number> {
    return (redis as unknown as { intakeStoreIfNewer(k: string, v: number, p: string, ttl: number): Promise<number> }).intakeStoreIfNewer(
      key(jobId),
      version,
      payload,
      ttlMs,
    );
  }

  // Reads that arrive while one is at Redis wait for it, then go together as one MGET (see
  // batchReads): under load one command, one reply and one timer carry dozens of status reads
  // (bench:api (b): about an eighth more reads a second than ioredis' auto-pipelining, which
  // still built a command and a timer per read and a pipeline per tick). Reads that were
  // waiting when the breaker opened skip Redis like the ones after them.
  const read = batchReads(1, 1000, async (jobIds: string[]) => {
    if (Date.now() < skipUntil) return new Map<string, string | null>();
    const values = await redis.mget(jobIds.map(key));
    return new Map(jobIds.map((jobId, i) => [jobId, values[i] ?? null]));
  });

  // Repair as soon as Redis is back, not at this process's next cache call: a worker that
  // wrote nothing more would otherwise leave a stale key until the TTL.
  redis.on('ready', () => {
    skipUntil = 0;
    repair().catch((err: unknown) => failed(err));
  });

  return {
    stats,
    async get(jobId) {
      stats.reads++;
      if (Date.now() < skipUntil || dirty.has(jobId)) return null;
      try {
        const value = (await read(jobId)) ?? null;
        if (value === null || value === DELETED) {
          stats.misses++;
          return null;
        }
        stats.hits++;
        return value;
      } catch (err) {
        failed(err);
        return null;
      }
    },
    async store(jobId, version, payload) {
      if (Date.now() < skipUntil) {
        dirty.add(jobId);
        scheduleRepair();
        return;
      }
      try {
        await storeIfNewer(jobId, version, payload);
      } catch (err) {
        failed(err, jobId);
      }
    },
    async fill(jobId, version, payload) {
      if (Date.now() < skipUntil || dirty.has(jobId)) return;
      try {
        await storeIfNewer(jobId, version, payload);
      } catch (err) {
        failed(err);
      }
    },
    async forget(jobId) {
      try {
        await redis.set(key(jobId), DELETED, 'PX', ttlMs);
      } catch (err) {
        failed(err, jobId); // repaired from the database (where it is gone) when Redis is back
      }
    },
    async ping() {
      await redis.ping();
    },
    async close() {
      clearTimeout(repairTimer);
      redis.disconnect();
    },
  };
}
