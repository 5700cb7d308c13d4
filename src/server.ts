import { Queue } from 'bullmq';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import { buildApp } from './app.js';
import { fastRedis, patientRedis } from './cache/redis.js';
import { createStatusCache, type StatusCache } from './cache/status-cache.js';
import type { Config } from './config.js';
import type { Dispatcher } from './dispatch/dispatcher.js';
import { createLocalDispatcher } from './dispatch/local.js';
import { bullPrefix, createQueueDispatcher, QUEUE_NAME, startQueueWorker, type JobData } from './dispatch/queue.js';
import { startReconciler } from './dispatch/reconciler.js';
import { createLocalEvents, createRedisEvents, type JobEvents } from './events/job-events.js';
import type { PipelineDeps } from './ingest/pipeline.js';
import type { Tracker } from './jobs/tracking.js';
import type { Db } from './storage/db.js';
import { findJob, payloadJson } from './storage/jobs.js';
import { migrate } from './storage/migrate.js';
import { openPglite } from './storage/pglite.js';
import { openPostgres } from './storage/postgres.js';

export function createLogger(config: Config): FastifyBaseLogger {
  return pino({ level: config.logLevel });
}

export async function openStorage(config: Config, log: FastifyBaseLogger): Promise<Db> {
  if (config.databaseUrl) {
    return openPostgres(config.databaseUrl, config.pgPoolSize, (err) => log.error({ err }, 'idle database connection lost'));
  }
  return openPglite(config.dataDir);
}

/** What every Intake process shares: storage, and in scale-out mode the cache, events and queue. */
interface Runtime {
  db: Db;
  tracker: Tracker;
  events: JobEvents;
  cache?: StatusCache;
  queue?: Queue<JobData>;
  pipeline: PipelineDeps;
  /** Closes everything above (after the caller has stopped its workers). */
  close(): Promise<void>;
}

async function openRuntime(config: Config, log: FastifyBaseLogger): Promise<Runtime> {
  const db = await openStorage(config, log);
  try {
    const applied = await migrate(db);
    if (applied.length > 0) log.info({ applied }, 'migrations applied');
  } catch (err) {
    await db.close().catch(() => {});
    throw err;
  }
  let cache: StatusCache | undefined;
  let events: JobEvents = createLocalEvents();
  let queue: Queue<JobData> | undefined;
  const connections: Redis[] = [];
  if (config.redisUrl) {
    const url = config.redisUrl;
    const fast = fastRedis(url);
    fast.on('error', () => {}); // reported by the cache when a command fails
    connections.push(fast);
    cache = createStatusCache(fast, {
      prefix: config.redisKeyPrefix,
      ttlSeconds: config.cacheTtlSeconds,
      log,
      async load(jobId) {
        const row = await findJob(db, jobId);
        return row ? { version: row.version, payload: payloadJson(row) } : null;
      },
    });
    events = createRedisEvents({ publisher: fast, subscriber: () => patientRedis(url), prefix: config.redisKeyPrefix, log });
    const queueConnection = patientRedis(url);
    queueConnection.on('error', (err) => log.warn({ err: err.message }, 'queue connection error'));
    connections.push(queueConnection);
    queue = new Queue<JobData>(QUEUE_NAME, { connection: queueConnection, prefix: bullPrefix(config.redisKeyPrefix) });
    queue.on('error', (err) => log.warn({ err: err.message }, 'queue error'));
  }
  const tracker: Tracker = {
    db,
    async changed(row) {
      const payload = payloadJson(row);
      await cache?.store(row.job_id, row.version, payload);
      await events.publish(row.job_id, payload);
    },
  };
  const pipeline: PipelineDeps = {
    tracker,
    uploadDir: config.uploadDir,
    batchSize: config.batchSize,
    maxAttempts: config.maxJobAttempts,
    claimStaleAfterMs: config.redisUrl ? config.workerLockMs : 0,
    log: log.child({ component: 'worker' }),
  };
  return {
    db,
    tracker,
    events,
    cache,
    queue,
    pipeline,
    async close() {
      await queue?.close();
      await events.close();
      await cache?.close();
      for (const connection of connections) connection.disconnect();
      await db.close();
    },
  };
}

/** Workers of a process: BullMQ workers plus the reconciler (scale-out), or the local dispatcher. */
function startWorkers(config: Config, runtime: Runtime, log: FastifyBaseLogger) {
  const stoppers: { close(): Promise<void> }[] = [];
  if (runtime.queue) {
    if (config.workerConcurrency > 0) {
      const connection = patientRedis(config.redisUrl!);
      connection.on('error', (err) => log.warn({ err: err.message }, 'worker connection error'));
      const worker = startQueueWorker({
        pipeline: runtime.pipeline,
        connection,
        prefix: bullPrefix(config.redisKeyPrefix),
        concurrency: config.workerConcurrency,
        lockMs: config.workerLockMs,
      });
      // BullMQ leaves a connection it was given open; it is closed here, after the worker.
      stoppers.push({ close: () => worker.close().finally(() => connection.disconnect()) });
    }
    stoppers.push(
      startReconciler({ db: runtime.db, queue: runtime.queue, log, intervalMs: config.reconcileIntervalMs, staleAfterMs: config.workerLockMs }),
    );
  }
  return {
    async close() {
      await Promise.all(stoppers.map((s) => s.close()));
    },
  };
}

export interface Intake {
  app: FastifyInstance;
  db: Db;
  dispatcher: Dispatcher;
  events: JobEvents;
  cache?: StatusCache;
  /** Starts taking jobs (after listen). */
  start(): Promise<void>;
  /** Stops in order: no new requests, then workers (at a batch boundary), then connections. */
  close(): Promise<void>;
}

/** `intake serve`: the API, and workers unless WORKER_CONCURRENCY=0. */
export async function createIntake(config: Config, log: FastifyBaseLogger): Promise<Intake> {
  const runtime = await openRuntime(config, log);
  try {
    const dispatcher = runtime.queue
      ? createQueueDispatcher(runtime.queue, log)
      : createLocalDispatcher({ pipeline: runtime.pipeline, concurrency: config.workerConcurrency });
    const app = await buildApp({ config, db: runtime.db, dispatcher, cache: runtime.cache, events: runtime.events }, { loggerInstance: log });
    let workers: { close(): Promise<void> } | undefined;
    return {
      app,
      db: runtime.db,
      dispatcher,
      events: runtime.events,
      cache: runtime.cache,
      async start() {
        await dispatcher.start();
        workers = startWorkers(config, runtime, log);
      },
      async close() {
        await app.close();
        await dispatcher.close();
        await workers?.close();
        await runtime.close();
      },
    };
  } catch (err) {
    await runtime.close().catch(() => {});
    throw err;
  }
}

function onSignals(log: FastifyBaseLogger, graceMs: number, close: () => Promise<void>): void {
  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      log.error({ graceMs }, 'shutdown grace period over; exiting now');
      process.exit(1);
    }, graceMs);
    force.unref();
    close().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'error during shutdown');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

export async function serve(config: Config): Promise<void> {
  const log = createLogger(config);
  const intake = await createIntake(config, log);
  const mode = config.redisUrl ? 'scale-out: PostgreSQL + Redis + BullMQ' : config.databaseUrl ? 'PostgreSQL, in-process workers' : 'embedded PGlite';
  log.info({ mode, dataDir: config.databaseUrl ? undefined : config.dataDir, workers: config.workerConcurrency }, `storage and queue: ${mode}`);
  if (config.host === '127.0.0.1') log.info('listening on 127.0.0.1 only; set HOST=0.0.0.0 to accept other machines');
  onSignals(log, config.shutdownGraceMs, () => intake.close());
  await intake.app.listen({ port: config.port, host: config.host });
  await intake.start();
}

/** `intake worker`: BullMQ workers and the reconciler, no HTTP. */
export async function work(config: Config): Promise<void> {
  const log = createLogger(config);
  const runtime = await openRuntime(config, log);
  const workers = startWorkers(config, runtime, log);
  log.info({ concurrency: config.workerConcurrency }, 'worker started');
  onSignals(log, config.shutdownGraceMs, async () => {
    await workers.close();
    await runtime.close();
  });
}
