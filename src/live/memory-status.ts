import type { CacheStats, PendingChange, StatusCache } from './status-cache.js';

// Jobs kept; past it the least recently written goes (a miss reads the database).
const MAX_ENTRIES = 10_000;

/**
 * The status cache of embedded mode, in this process's memory (one process per DATA_DIR, so
 * every change to a job goes through it). It keeps the status URL answering while PGlite is
 * busy: PGlite is one connection, and a job's publish holds it (in one transaction) for as
 * long as moving its rows takes. The same rules as the Redis cache: a change in flight makes
 * the job a miss until it is settled, a payload never replaces a newer one, a deleted job
 * stays deleted (a tombstone) whatever write comes late.
 */
export function createMemoryStatusCache(): StatusCache {
  const entries = new Map<string, { version: number; payload: string | null }>();
  const inFlight = new Map<string, number>();
  const stats: CacheStats = { reads: 0, hits: 0, misses: 0, errors: 0 };

  /** Keeps the payload unless the entry holds this version, a newer one, or the tombstone. */
  function offer(jobId: string, version: number, payload: string): void {
    const current = entries.get(jobId);
    if (current && current.version >= version) return;
    entries.delete(jobId); // written last: evicted last
    entries.set(jobId, { version, payload });
    if (entries.size > MAX_ENTRIES) entries.delete(entries.keys().next().value!);
  }

  function settled(jobId: string): void {
    const left = (inFlight.get(jobId) ?? 1) - 1;
    if (left > 0) inFlight.set(jobId, left);
    else inFlight.delete(jobId);
  }

  return {
    kind: 'memory',
    async get(jobId) {
      stats.reads++;
      const payload = inFlight.has(jobId) ? null : (entries.get(jobId)?.payload ?? null);
      if (payload === null) stats.misses++;
      else stats.hits++;
      return payload;
    },
    async changing(jobId): Promise<PendingChange> {
      inFlight.set(jobId, (inFlight.get(jobId) ?? 0) + 1);
      return {
        async stored(version, payload) {
          offer(jobId, version, payload);
          settled(jobId);
        },
        async failed() {
          // Committed or not: the next read goes to the database (a tombstone stays).
          if (entries.get(jobId)?.payload !== null) entries.delete(jobId);
          settled(jobId);
        },
      };
    },
    async fill(jobId, version, payload) {
      if (!inFlight.has(jobId)) offer(jobId, version, payload);
    },
    async forget(jobId) {
      inFlight.delete(jobId); // its marks end here; a late settle finds the tombstone
      entries.delete(jobId);
      entries.set(jobId, { version: Number.MAX_SAFE_INTEGER, payload: null });
      if (entries.size > MAX_ENTRIES) entries.delete(entries.keys().next().value!);
    },
    async ping() {},
    stats,
    async close() {
      entries.clear();
    },
  };
}
