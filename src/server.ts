import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp } from './app.js';
import type { Config } from './config.js';
import type { Dispatcher } from './dispatch/dispatcher.js';
import { createLocalDispatcher } from './dispatch/local.js';
import type { Db } from './storage/db.js';
import { migrate } from './storage/migrate.js';
import { openPglite } from './storage/pglite.js';
import { openPostgres } from './storage/postgres.js';

export interface Intake {
  app: FastifyInstance;
  db: Db;
  dispatcher: Dispatcher;
  /** Stops in order: no new requests, then workers (at a batch boundary), then storage. */
  close(): Promise<void>;
}

export function createLogger(config: Config): FastifyBaseLogger {
  return pino({ level: config.logLevel });
}

export async function openStorage(config: Config, log: FastifyBaseLogger): Promise<Db> {
  if (config.databaseUrl) {
    return openPostgres(config.databaseUrl, config.pgPoolSize, (err) => log.error({ err }, 'idle database connection lost'));
  }
  return openPglite(config.dataDir);
}

/** Opens storage, applies migrations, and builds the app with its in-process workers. */
export async function createIntake(config: Config, log: FastifyBaseLogger): Promise<Intake> {
  const db = await openStorage(config, log);
  try {
    const applied = await migrate(db);
    if (applied.length > 0) log.info({ applied }, 'migrations applied');
    const dispatcher = createLocalDispatcher({
      db,
      uploadDir: config.uploadDir,
      batchSize: config.batchSize,
      concurrency: config.workerConcurrency,
      log: log.child({ component: 'worker' }),
    });
    const app = await buildApp({ config, db, dispatcher }, { loggerInstance: log });
    return {
      app,
      db,
      dispatcher,
      async close() {
        await app.close();
        await dispatcher.close();
        await db.close();
      },
    };
  } catch (err) {
    await db.close().catch(() => {});
    throw err;
  }
}

/** `intake serve`: the API and its workers, until SIGTERM or SIGINT. */
export async function serve(config: Config): Promise<void> {
  const log = createLogger(config);
  const intake = await createIntake(config, log);
  log.info(
    config.databaseUrl ? { storage: 'postgres' } : { storage: 'pglite', dataDir: config.dataDir },
    config.databaseUrl ? 'storage: PostgreSQL at DATABASE_URL' : 'storage: embedded PGlite',
  );
  if (config.redisUrl) log.warn('REDIS_URL is set but not used by this version: jobs run in-process');
  if (config.host === '127.0.0.1') log.info('listening on 127.0.0.1 only; set HOST=0.0.0.0 to accept other machines');

  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    log.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      log.error({ graceMs: config.shutdownGraceMs }, 'shutdown grace period over; exiting now');
      process.exit(1);
    }, config.shutdownGraceMs);
    force.unref();
    intake.close().then(
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

  await intake.app.listen({ port: config.port, host: config.host });
  await intake.dispatcher.start();
}
