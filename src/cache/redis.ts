import { Redis, type RedisOptions } from 'ioredis';

/**
 * A connection for the status cache and event publishing: it must fail fast, never queue
 * commands while disconnected, and keep reconnecting in the background, so that a Redis
 * that is down or hangs costs a read tens of milliseconds, not a stall.
 */
export function fastRedis(url: string): Redis {
  const options: RedisOptions = {
    enableOfflineQueue: false,
    commandTimeout: 50,
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
