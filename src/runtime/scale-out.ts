import { Queue } from 'bullmq';
import type { FastifyBaseLogger } from 'fastify';
import type { Redis } from 'ioredis';
import { fastRedis, patientRedis } from '../live/redis.js';
import { createStatusCache, type StatusCache } from '../live/status-cache.js';
import type { Config } from '../config.js';
import { createRedisEvents, type JobEvents } from '../live/job-events.js';
import type { PipelineDeps } from '../jobs/runner.js';
import type { Db } from '../storage/db.js';
import { findPayload } from '../storage/jobs.js';
import type { Dispatcher } from '../jobs/dispatcher.js';
import { QUEUE_STATES, type QueueCounts } from './metrics.js';
import { bullPrefix, createQueueDispatcher, QUEUE_NAME, startQueueWorker, type JobData } from './queue.js';
import { startReconciler } from './reconciler.js';

/**
 * Everything Redis brings in scale-out mode: the status cache, the event channel, the BullMQ
 * queue with its workers and the reconciler. Loaded only when REDIS_URL is set, so the other
 * modes never load BullMQ or ioredis.
 */
export interface ScaleOut {
  cache: StatusCache;
  /**
   * BullMQ's job counts for /metrics, on the writer connection: no offline queue, so a Redis that
   * is down fails a count at once, and up to 2 s for a reply (the scrape waits at most 1 s), since
   * the first count also sets the queue up, more than the read connection's 50 ms allow under load.
   */
  queueCounts: QueueCounts;
  events: JobEvents;
  dispatcher: Dispatcher;
  /** BullMQ workers (unless WORKER_CONCURRENCY=0) and the reconciler. */
  startWorkers(pipeline: PipelineDeps): { close(): Promise<void> };
  close(): Promise<void>;
}

export function openScaleOut(config: Config, db: Db, log: FastifyBaseLogger): ScaleOut {
  const url = config.redisUrl!;
  const connections: Redis[] = [];
  const fast = fastRedis(url);
  // Marks and writes, which a commit waits for: a reply read late must not count as lost.
  const writer = fastRedis(url, 2000);
  for (const connection of [fast, writer]) {
    connection.on('error', () => {}); // reported by the cache when a command fails
    connections.push(connection);
  }
  const cache = createStatusCache(fast, {
    writer,
    prefix: config.redisKeyPrefix,
    ttlSeconds: config.cacheTtlSeconds,
    log,
    load: async (jobId) => (await findPayload(db, jobId)) ?? null,
  });
  const events = createRedisEvents({ publisher: fast, subscriber: () => patientRedis(url), prefix: config.redisKeyPrefix, log });
  const queueConnection = patientRedis(url);
  queueConnection.on('error', (err) => log.warn({ err: err.message }, 'queue connection error'));
  connections.push(queueConnection);
  const queue = new Queue<JobData>(QUEUE_NAME, { connection: queueConnection, prefix: bullPrefix(config.redisKeyPrefix) });
  queue.on('error', (err) => log.warn({ err: err.message }, 'queue error'));

  // Opened at the first count (API processes only). A handle whose setup failed (its first
  // command timed out) stays failed: the next count makes a new one.
  let counting: Queue | undefined;
  function countingQueue(): Queue {
    const handle = new Queue(QUEUE_NAME, { connection: writer, prefix: bullPrefix(config.redisKeyPrefix) });
    handle.on('error', () => {}); // a failed count is logged by the scrape
    handle.waitUntilReady().catch(() => {
      if (counting === handle) counting = undefined;
      void handle.close().catch(() => {});
    });
    return handle;
  }

  return {
    cache,
    queueCounts: () => (counting ??= countingQueue()).getJobCounts(...QUEUE_STATES),
    events,
    dispatcher: createQueueDispatcher(queue, log),
    startWorkers(pipeline) {
      const stoppers: { close(): Promise<void> }[] = [];
      if (config.workerConcurrency > 0) {
        const connection = patientRedis(url);
        connection.on('error', (err) => log.warn({ err: err.message }, 'worker connection error'));
        const worker = startQueueWorker({
          pipeline,
          connection,
          prefix: bullPrefix(config.redisKeyPrefix),
          concurrency: config.workerConcurrency,
          lockMs: config.workerLockMs,
        });
        // BullMQ leaves a connection it was given open; it is closed here, after the worker.
        stoppers.push({ close: () => worker.close().finally(() => connection.disconnect()) });
      }
      stoppers.push(startReconciler({ db, queue, log, intervalMs: config.reconcileIntervalMs, staleAfterMs: config.workerLockMs }));
      return {
        async close() {
          await Promise.all(stoppers.map((s) => s.close()));
        },
      };
    },
    async close() {
      await counting?.close();
      await queue.close();
      await events.close();
      await cache.close();
      for (const connection of connections) connection.disconnect();
    },
  };
}
