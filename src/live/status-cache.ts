import { randomBytes } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { Redis } from 'ioredis';
import { batchReads } from '../core/batch.js';

/**
 * The Redis status cache: `ingest_job:{job_id}` holds the job payload as JSON, exactly the
 * bytes the API answers with. Freshness comes from writers, not the TTL: a change marks the
 * key before it commits and writes its payload through after, so from the moment the database
 * could show the change until its payload is in Redis, the key reads as a miss and the caller
 * reads the database. A write only lands if it is newer than what the key holds, so a slow
 * reader filling the key after a miss can never put an older state back. Any Redis error is a
 * miss; the caller reads the database instead.
 */
export interface StatusCache {
  /** Redis (scale-out), or this process's memory (embedded mode: see memory-status.ts). */
  readonly kind: 'redis' | 'memory';
  /** The cached payload, or null: absent, marked by a change in flight, deleted, or Redis unavailable. */
  get(jobId: string): Promise<string | null>;
  /**
   * Called just before a change to the job commits: from then until every change pending on
   * the job is settled, the key reads as a miss and fills cannot make it readable. The change
   * must then be settled exactly once, or the job forgotten (the tombstone ends every mark).
   * Never throws.
   */
  changing(jobId: string): Promise<PendingChange>;
  /**
   * Fills the key after a miss, with what the database answered, unless it holds this version
   * or a newer one. Best effort: skipping a fill leaves no key staler than it was.
   */
  fill(jobId: string, version: number, payload: string): Promise<void>;
  /** The job was deleted: its key answers as a miss from now on, and no late write lands on it (nor a pending mark). */
  forget(jobId: string): Promise<void>;
  /** PING on the cache's own fail-fast connection: /readyz asks it rather than opening one. */
  ping(): Promise<void>;
  readonly stats: CacheStats;
  close(): Promise<void>;
}

/** A change between its mark and its outcome. */
export interface PendingChange {
  /** It committed: the key answers this payload (or a newer one) once no other change is pending. */
  stored(version: number, payload: string): Promise<void>;
  /** Its commit failed, so it may or may not have happened: settled with the row the database holds now. */
  failed(): Promise<void>;
}

// What a deleted job's key holds until it expires: no mark or write changes it (and its version
// is one no write could beat), so a worker's change committed before the delete but written
// after it cannot bring the job back.
const DELETED = `{"deleted":true,"version":${Number.MAX_SAFE_INTEGER}}`;

export interface CacheStats {
  /** Every get(), answered from Redis or not (breaker open, Redis error): /metrics counts misses as reads - hits. */
  reads: number;
  hits: number;
  misses: number;
  errors: number;
}

// A key holds a payload (JSON: it starts with '{'), or while changes are in flight a mark,
// `pending:{tokens}:{newest payload known, or nothing}`: one token (a random id) per change
// marked and not yet settled, and the payload the key answers once the last token is gone.
// A token is removed only by the settling of its own change, which carries its payload, so the
// key answers again only once every change that may have committed has written its payload.
// A change always settles the token it sent, whether its mark was answered or timed out, so an
// unanswered mark that landed leaves nothing behind; a writer that dies between its mark and
// its settling leaves its token, and the key a miss, until the TTL (slower, never stale). The
// tombstone of a deleted job is left as it is by all of these.
const KEY_STATE = `
local DELETED = '${DELETED}'
local function state(key)
  local current = redis.call('GET', key)
  if not current then return {}, nil end
  local list = string.match(current, '^pending:([%w,]*):')
  if not list then return {}, current end
  local tokens = {}
  for token in string.gmatch(list, '%w+') do tokens[#tokens + 1] = token end
  local payload = string.sub(current, #list + 10)
  if payload == '' then payload = nil end
  return tokens, payload
end
local function write(key, tokens, payload, ttl)
  if #tokens > 0 then redis.call('SET', key, 'pending:' .. table.concat(tokens, ',') .. ':' .. (payload or ''), 'PX', ttl)
  elseif payload then redis.call('SET', key, payload, 'PX', ttl)
  else redis.call('DEL', key) end
end
`;

// KEYS[1] key; ARGV[1] ttl in ms, ARGV[2] the change's token.
const MARK = `${KEY_STATE}
local tokens, payload = state(KEYS[1])
if payload == DELETED then return 0 end
tokens[#tokens + 1] = ARGV[2]
write(KEYS[1], tokens, payload, ARGV[1])
return 1`;

// KEYS[1] key; ARGV[1] ttl in ms, ARGV[2] the token of the change settled ('' for a fill, a
// repair or a change that sent no mark), ARGV[3] version, ARGV[4] payload: kept if newer than
// the key's (by its version field, not text in a file name or error). Returns 1 if the key changed.
const SETTLE = `${KEY_STATE}
local tokens, payload = state(KEYS[1])
if payload == DELETED then return 0 end
local left = {}
for _, token in ipairs(tokens) do
  if token ~= ARGV[2] then left[#left + 1] = token end
end
local newest = payload
local version = payload and tonumber(string.match(payload, '"version":(%d+)'))
if not (version and version >= tonumber(ARGV[3])) then newest = ARGV[4] end
if #left == #tokens and newest == payload then return 0 end
write(KEYS[1], left, newest, ARGV[1])
return 1`;

// After an error, Redis is skipped for this long, so a hung server costs one timeout, not one per request.
const BREAKER_MS = 1000;

export interface StatusCacheOptions {
  prefix: string;
  ttlSeconds: number;
  log: FastifyBaseLogger;
  /**
   * The connection for marks and writes (default: the one given for reads). A change waits for
   * its mark before it commits, so this one should allow a reply to come late (see fastRedis).
   */
  writer?: Redis;
  /** The job's current payload from the database (null if gone), to repair its key. */
  load(jobId: string): Promise<{ version: number; payload: string } | null>;
}

export function createStatusCache(redis: Redis, options: StatusCacheOptions): StatusCache & { stats: CacheStats } {
  const { prefix, log } = options;
  const ttlMs = options.ttlSeconds * 1000;
  const key = (jobId: string) => `${prefix}ingest_job:${jobId}`;
  const writer = options.writer ?? redis;
  writer.defineCommand('intakeMark', { numberOfKeys: 1, lua: MARK });
  writer.defineCommand('intakeSettle', { numberOfKeys: 1, lua: SETTLE });
  const scripts = writer as unknown as {
    intakeMark(key: string, ttl: number, token: string): Promise<number>;
    intakeSettle(key: string, ttl: number, token: string, version: number, payload: string): Promise<number>;
  };
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
  // cannot land on it afterwards (a key marked by changes in flight keeps its mark and takes
  // the version as its newest). In the background, one pass at a time: until a key is
  // repaired, get() answers it as a miss here.
  let repairing: Promise<void> | undefined;
  function repair(): Promise<void> {
    repairing ??= (async () => {
      for (const jobId of [...dirty]) {
        const latest = await options.load(jobId);
        if (latest) await settle(jobId, '', latest.version, latest.payload);
        else await writer.set(key(jobId), DELETED, 'PX', ttlMs);
        dirty.delete(jobId);
      }
    })().finally(() => (repairing = undefined));
    return repairing;
  }

  /** Offers a payload to the key (see SETTLE), removing the token of the change it settles if any. */
  function settle(jobId: string, token: string, version: number, payload: string): Promise<number> {
    return scripts.intakeSettle(key(jobId), ttlMs, token, version, payload);
  }

  /**
   * Marks the key for a change about to commit; returns the token its settling must remove.
   * Sent even while the breaker is open: the breaker spares reads a hung Redis, but a change
   * that commits unmarked can leave other processes answering its previous state until it is
   * repaired. A mark that failed (Redis down, or no reply within the writer's timeout) may have
   * landed all the same, so its settling removes it either way; until then the job is dirty,
   * and its key is repaired from the database once Redis answers.
   */
  async function mark(jobId: string): Promise<string> {
    const token = randomBytes(8).toString('hex');
    try {
      await scripts.intakeMark(key(jobId), ttlMs, token);
    } catch (err) {
      failed(err, jobId);
    }
    return token;
  }

  // A committed change's payload, settling its mark: sent even while the breaker is open, as
  // the mark was, since without it the key would read as a miss until the TTL. A write that
  // fails is repaired from the database.
  async function writeThrough(jobId: string, token: string, version: number, payload: string): Promise<void> {
    try {
      await settle(jobId, token, version, payload);
    } catch (err) {
      failed(err, jobId);
    }
  }

  // A change whose commit failed may have committed or not: the database knows which, so its
  // row as it is now settles the mark. If the database cannot say either, the mark stays and
  // the key reads as a miss until the TTL.
  async function settleFromDatabase(jobId: string, token: string): Promise<void> {
    let latest: Awaited<ReturnType<StatusCacheOptions['load']>>;
    try {
      latest = await options.load(jobId);
    } catch {
      return;
    }
    if (latest) await writeThrough(jobId, token, latest.version, latest.payload);
    else await forget(jobId);
  }

  async function forget(jobId: string): Promise<void> {
    try {
      await writer.set(key(jobId), DELETED, 'PX', ttlMs);
    } catch (err) {
      failed(err, jobId); // repaired from the database (where it is gone) when Redis is back
    }
  }

  // Reads that arrive while one is at Redis wait for it, then go together as one MGET (see
  // batchReads): under load one command, one reply and one timer carry dozens of status reads,
  // where ioredis' auto-pipelining builds a command and a timer per read. Reads that were
  // waiting when the breaker opened skip Redis like the ones after them.
  const read = batchReads(1, 1000, async (jobIds: string[]) => {
    if (Date.now() < skipUntil) return new Map<string, string | null>();
    const values = await redis.mget(jobIds.map(key));
    return new Map(jobIds.map((jobId, i) => [jobId, values[i] ?? null]));
  });

  // Repair as soon as Redis is back, not at this process's next cache call: a worker that
  // wrote nothing more would otherwise leave a stale key until the TTL.
  writer.on('ready', () => {
    skipUntil = 0;
    repair().catch((err: unknown) => failed(err));
  });

  return {
    kind: 'redis',
    stats,
    async get(jobId) {
      stats.reads++;
      if (Date.now() < skipUntil || dirty.has(jobId)) return null;
      try {
        const value = (await read(jobId)) ?? null;
        // A mark (a change in flight) does not start with '{'; the tombstone is JSON but no job.
        if (value === null || value.charCodeAt(0) !== 0x7b || value === DELETED) {
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
    async changing(jobId) {
      const token = await mark(jobId);
      return {
        stored: (version, payload) => writeThrough(jobId, token, version, payload),
        failed: () => settleFromDatabase(jobId, token),
      };
    },
    async fill(jobId, version, payload) {
      if (Date.now() < skipUntil || dirty.has(jobId)) return;
      try {
        await settle(jobId, '', version, payload);
      } catch (err) {
        failed(err);
      }
    },
    forget,
    async ping() {
      await redis.ping();
    },
    async close() {
      clearTimeout(repairTimer);
      redis.disconnect();
    },
  };
}
