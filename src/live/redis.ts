import { Redis, type RedisOptions } from 'ioredis';

/**
 * A connection for the status cache and event publishing: it must fail fast, never queue
 * commands while disconnected, and keep reconnecting in the background, so that a Redis
 * that is down or hangs costs a read tens of milliseconds, not a stall. Writes that a commit
 * waits for take a longer `commandTimeoutMs`: a busy event loop reads a reply late, and a
 * timeout that fires first reports as lost a command that Redis ran.
 */
export function fastRedis(url: string, commandTimeoutMs = 50): Redis {
  const options: RedisOptions = {
    enableOfflineQueue: false,
    commandTimeout: commandTimeoutMs,
    connectTimeout: 500,
    maxRetriesPerRequest: 0,
    retryStrategy: (times) => Math.min(times * 100, 1000),
    lazyConnect: false,
  };
  return new Redis(url, options);
}

/** A connection for BullMQ and pub/sub subscriptions, which block and must wait out outages. */
export function patientRedis(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, retryStrategy: (times) => Math.min(times * 100, 1000) });
}
