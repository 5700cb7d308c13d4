import { mkdir } from 'node:fs/promises';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp } from './http/app.js';
import { createMemoryStatusCache } from './live/memory-status.js';
import type { StatusCache } from './live/status-cache.js';
import type { Config } from './config.js';
import type { Dispatcher } from './jobs/dispatcher.js';
import { createLocalDispatcher } from './runtime/local-dispatcher.js';
import { createLocalEvents, type JobEvents } from './live/job-events.js';
import type { PipelineDeps } from './jobs/runner.js';
import { importSettings } from './sources/imports.js';
import { fileStore, type UploadStore } from './sources/uploads.js';
import { startRetention } from './jobs/removal.js';
import { createTracker, type Outbox } from './jobs/tracking.js';
import type { Db } from './storage/db.js';
import type { QueueCounts } from './runtime/metrics.js';
import { ensureSchema, loadMigrations, migrate } from './storage/migrate.js';
import { ensureSqlRole, SQL_ROLE, type SqlRole } from './storage/sql-role.js';
import { openPostgres } from './storage/postgres.js';
import { enqueueDeliveries, startDeliveries } from './runtime/webhooks.js';
import { prettyStream } from './core/pretty-log.js';
import { localScheduler, type Scheduler } from './runtime/schedules.js';
import { limitConnections, openFilesLimit } from './core/sockets.js';

export function createLogger(config: Config): FastifyBaseLogger {
  const pretty = config.logFormat === 'pretty' || (config.logFormat === 'auto' && process.stdout.isTTY);
  return pretty ? pino({ level: config.logLevel }, prettyStream(process.stdout)) : pino({ level: config.logLevel });
}

export async function openStorage(config: Config, log: FastifyBaseLogger): Promise<Db> {
  if (config.databaseUrl) {
    return openPostgres(config.databaseUrl, config.pgPoolSize, (err) => log.error({ err }, 'idle database connection lost'));
  }
  // PGlite (tens of MB of JavaScript and WebAssembly) is loaded only in embedded mode.
  const { openPglite } = await import('./storage/pglite.js');
  return openPglite(config.dataDir, { fsync: config.embeddedFsync, maxMemoryBytes: config.embeddedMaxMemoryMb * 1024 ** 2 });
}

/** What every Intake process shares: storage, and in scale-out mode the cache, events and queue. */
interface Runtime {
  db: Db;
  sqlRole: SqlRole;
  events: JobEvents;
  cache?: StatusCache;
  /** Scale-out: BullMQ's counts for /metrics. */
  queueCounts?: QueueCounts;
  dispatcher: Dispatcher;
  scheduler: Scheduler;
  pipeline: PipelineDeps;
  /** Starts this process's background work: BullMQ workers and the reconciler (scale-out), retention. */
  startWorkers(): { close(): Promise<void> };
  /** Closes everything above (after the caller has stopped its workers). */
  close(): Promise<void>;
}

/** The upload store UPLOAD_STORE names; the AWS SDK is loaded only when it is used. */
async function openUploads(config: Config): Promise<UploadStore> {
  if (config.uploadStore.kind === 'file') return fileStore(config.uploadDir);
  const { s3Client, s3Store } = await import('./sources/s3.js');
  await mkdir(config.uploadDir, { recursive: true }); // scratch space for zips read from the bucket
  return s3Store(s3Client(config.s3, config.importTimeoutMs), {
    ...config.uploadStore,
    maxUploadBytes: config.maxUploadBytes,
    scratchDir: config.uploadDir,
  });
}

async function openRuntime(config: Config, log: FastifyBaseLogger): Promise<Runtime> {
  const db = await openStorage(config, log);
  let sqlRole: SqlRole;
  try {
    const applied = await migrate(db, loadMigrations(), { datasetSchema: config.datasetSchema });
    if (applied.length > 0) log.info({ applied }, 'migrations applied');
    await ensureSchema(db, config.datasetSchema);
    sqlRole = await ensureSqlRole(
      db,
      config.datasetSchema,
      config.databaseUrl
        ? { databaseUrl: config.databaseUrl, onError: (err) => log.error({ err }, 'idle SQL query connection lost') }
        : undefined,
    );
  } catch (err) {
    await db.close().catch(() => {});
    throw err;
  }
  // BullMQ and ioredis are loaded only when they are used.
  const scaleOut = config.redisUrl ? (await import('./runtime/scale-out.js')).openScaleOut(config, db, log) : undefined;
  const events = scaleOut?.events ?? createLocalEvents();
  // Embedded: in memory, so status reads answer while a publish holds PGlite's one connection.
  const cache = scaleOut?.cache ?? (db.kind === 'pglite' ? createMemoryStatusCache() : undefined);
  // A job's end writes its webhook deliveries; this process's deliverer (once started) is woken.
  let deliverer: ReturnType<typeof startDeliveries> | undefined;
  const outbox: Outbox = { write: (tx, row) => enqueueDeliveries(tx, row, config.webhooks.urls), written: () => deliverer?.wake() };
  const tracker = createTracker(db, cache, events, outbox);
  const uploads = await openUploads(config);
  const pipeline: PipelineDeps = {
    db,
    tracker,
    events,
    uploads,
    imports: importSettings(config, sqlRole),
    batchSize: config.batchSize,
    fastPathMaxBytes: config.fastPathMaxBytes,
    limits: config.limits,
    datasetSchema: config.datasetSchema,
    maxAttempts: config.maxJobAttempts,
    maxDatasets: config.maxDatasets,
    claimStaleAfterMs: scaleOut ? config.workerLockMs : 0,
    log: log.child({ component: 'worker' }),
  };
  const dispatcher = scaleOut?.dispatcher ?? createLocalDispatcher({ pipeline, concurrency: config.workerConcurrency });
  const scheduler = config.redisUrl
    ? (await import('./runtime/schedule-queue.js')).bullScheduler(
        config.redisUrl,
        config.redisKeyPrefix,
        log.child({ component: 'schedules' }),
      )
    : localScheduler();
  if (sqlRole.sessionReason)
    log.warn(
      `POST /api/sql queries switch to the role ${SQL_ROLE} on Intake's own connections instead of logging in as a role of their own (${sqlRole.sessionReason}): a query that got past the SQL guard to set_config('role', …) could switch back`,
    );
  if (sqlRole.reason)
    log.warn(
      `POST /api/sql runs queries as the connecting user, not as the role ${SQL_ROLE} that can read only the datasets (${sqlRole.reason}): the SQL guard is its only wall`,
    );
  return {
    db,
    sqlRole,
    events,
    cache,
    queueCounts: scaleOut?.queueCounts,
    pipeline,
    dispatcher,
    scheduler,
    startWorkers() {
      const workers = scaleOut?.startWorkers(pipeline) ?? { close: async () => {} };
      deliverer = startDeliveries(db, config.webhooks, log.child({ component: 'webhooks' }));
      // In scale-out mode beats are taken by the processes that take jobs, as BullMQ jobs.
      const schedules =
        config.redisUrl && config.workerConcurrency === 0
          ? { close: async () => {} }
          : scheduler.start({
              db,
              settings: pipeline.imports,
              events,
              dispatcher,
              log: log.child({ component: 'schedules' }),
              maxJobsPerMinute: config.maxScheduledJobsPerMinute,
            });
      // Every process sweeps (one at a time, under a lock); retention off still expires idempotency keys.
      const retention = startRetention({
        db,
        uploads,
        cache,
        log: log.child({ component: 'retention' }),
        retentionDays: config.jobRetentionDays,
        intervalMs: config.retentionIntervalMs,
        // An upload in progress writes at least once per body window, or is cut off.
        partialMaxAgeMs: Math.max(2 * config.bodyIdleTimeoutMs, 60_000),
      });
      return {
        async close() {
          await retention.close();
          await schedules.close();
          await workers.close();
          await deliverer?.close();
        },
      };
    },
    async close() {
      await scheduler.close();
      await (scaleOut ? scaleOut.close() : events.close());
      await sqlRole.session?.close();
      await db.close();
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
    const { dispatcher } = runtime;
    const app = await buildApp(
      {
        config,
        db: runtime.db,
        dispatcher,
        tracker: runtime.pipeline.tracker,
        uploads: runtime.pipeline.uploads,
        scheduler: runtime.scheduler,
        cache: runtime.cache,
        events: runtime.events,
        queueCounts: runtime.queueCounts,
        sqlRole: runtime.sqlRole,
      },
      {
        loggerInstance: log,
        // Headers that never end hold a connection: cut after headersTimeoutMs, checked every second.
        http: { headersTimeout: config.headersTimeoutMs, connectionsCheckingInterval: Math.min(1000, config.headersTimeoutMs) },
      },
    );
    limitConnections(app.server, { max: config.maxConnections, perAddress: config.maxConnectionsPerAddress });
    let workers: { close(): Promise<void> } | undefined;
    return {
      app,
      db: runtime.db,
      dispatcher,
      events: runtime.events,
      cache: runtime.cache,
      async start() {
        await dispatcher.start();
        workers = runtime.startWorkers();
      },
      async close() {
        // Requests in flight may finish; a connection still open after half the grace period
        // (a client that never ends its request) is cut, so that closing always ends.
        const cut = setTimeout(() => app.server.closeAllConnections(), Math.min(5000, config.shutdownGraceMs / 2));
        try {
          await app.close();
        } finally {
          clearTimeout(cut);
        }
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
  const mode = config.redisUrl
    ? 'scale-out: PostgreSQL + Redis + BullMQ'
    : config.databaseUrl
      ? 'PostgreSQL, in-process workers'
      : 'embedded PGlite';
  log.info(
    { mode, dataDir: config.databaseUrl ? undefined : config.dataDir, workers: config.workerConcurrency },
    `storage and queue: ${mode}`,
  );
  if (config.apiTokens.length > 0) log.info({ tokens: config.apiTokens.length }, 'access control on: /api needs a bearer token');
  else if (config.host === '127.0.0.1' || config.host === 'localhost' || config.host === '::1') {
    log.info('no API_TOKENS: listening on loopback only; set API_TOKENS (and HOST) to accept other machines');
  } else
    log.warn({ host: config.host }, 'no API_TOKENS and not on loopback: anyone who can reach this port can submit, read and delete jobs');
  const files = openFilesLimit();
  if (files !== undefined && config.maxConnections > files - 256) {
    log.warn(
      { maxConnections: config.maxConnections, openFilesLimit: files },
      'MAX_CONNECTIONS leaves fewer than 256 open files for the database and uploads: lower it, or raise the limit (ulimit -n)',
    );
  }
  onSignals(log, config.shutdownGraceMs, () => intake.close());
  const address = await intake.app.listen({ port: config.port, host: config.host });
  await intake.start();
  const base = (config.publicUrl ?? address).replace('0.0.0.0', 'localhost').replace(/\/$/, '');
  log.info(`Intake is ready: the console is at ${base}/ and the API docs at ${base}/docs`);
}

/** `intake worker`: BullMQ workers and the reconciler, no HTTP. */
export async function work(config: Config): Promise<void> {
  const log = createLogger(config);
  const runtime = await openRuntime(config, log);
  const workers = runtime.startWorkers();
  log.info({ concurrency: config.workerConcurrency }, 'worker started');
  onSignals(log, config.shutdownGraceMs, async () => {
    await workers.close();
    await runtime.close();
  });
}
