/**
 * `intake doctor`: what this machine and this configuration give Intake, checked and printed a
 * line each (ok, warn, FAIL), so a start that would fail says why before it is tried. Exits 1
 * when anything FAILs.
 */
import { accessSync, constants, existsSync, readFileSync, statfsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ConfigError, loadConfig, type Config } from '../config.js';
import { isRunning, parseProcessId } from '../core/process-identity.js';
import { SQL_ROLE } from '../storage/sql-role.js';

const MIN_FREE_BYTES = 1024 ** 3;

type Level = 'ok' | 'warn' | 'FAIL';
type Report = (level: Level, what: string) => void;

/** Intake's version, from its package.json. */
export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
    engines: { node: string };
  };
  return pkg.version;
}

const gib = (bytes: number) => `${(bytes / 1024 ** 3).toFixed(1)} GiB`;

/** The nearest directory that exists: DATA_DIR is made at the first start. */
function existingParent(path: string): string {
  let dir = path;
  while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

function checkDirectory(report: Report, name: string, path: string): void {
  const dir = existingParent(path);
  try {
    accessSync(dir, constants.W_OK | constants.R_OK);
  } catch {
    return report('FAIL', `${name} ${path}: ${dir} is not writable by this user`);
  }
  const made = dir === path ? '' : ` (made at the first start, in ${dir})`;
  try {
    const fs = statfsSync(dir);
    const free = fs.bavail * fs.bsize;
    report(free < MIN_FREE_BYTES ? 'warn' : 'ok', `${name} ${path}${made}: writable, ${gib(free)} free`);
  } catch {
    report('ok', `${name} ${path}${made}: writable`);
  }
}

async function checkPostgres(report: Report, url: string): Promise<void> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000, query_timeout: 5000 });
  const where = new URL(url);
  const shown = `${where.hostname}:${where.port || 5432}${where.pathname}`;
  try {
    await client.connect();
    const { rows } = await client.query<{ server_version: string }>('SHOW server_version');
    const migrated = await client.query<{ n: string }>('SELECT count(*) AS n FROM intake_migrations').then(
      (r) => `${r.rows[0]!.n} migrations applied`,
      () => 'not migrated yet (intake migrate, or the first start, does it)',
    );
    const major = Number.parseInt(rows[0]!.server_version, 10);
    report(
      major >= 14 ? 'ok' : 'warn',
      `PostgreSQL ${rows[0]!.server_version} at ${shown}: reachable, ${migrated}${major >= 14 ? '' : ' (Intake is tested on 14 and later)'}`,
    );
    await checkSqlRole(report, client);
  } catch (err) {
    report('FAIL', `PostgreSQL at ${shown}: ${(err as Error).message || (err as NodeJS.ErrnoException).code}`);
  } finally {
    await client.end().catch(() => {});
  }
}

/** Whether POST /api/sql can run its queries as the role that reads only the datasets (storage/sql-role.ts). */
async function checkSqlRole(report: Report, client: import('pg').Client): Promise<void> {
  const { rows } = await client.query<{ user: string; creates: boolean; member: boolean | null }>(
    `SELECT current_user AS user, r.rolsuper OR r.rolcreaterole AS creates,
            (SELECT pg_has_role(current_user, s.oid, 'MEMBER') FROM pg_roles s WHERE s.rolname = $1) AS member
       FROM pg_roles r WHERE r.rolname = current_user`,
    [SQL_ROLE],
  );
  const { user, creates, member } = rows[0]!;
  if (creates || member) return report('ok', `POST /api/sql: queries run as the role ${SQL_ROLE}, which reads only the datasets`);
  report(
    'warn',
    `POST /api/sql: ${user} cannot create the role ${SQL_ROLE} nor switch to it, so queries run as ${user} and the SQL guard is their only wall ` +
      `(as a superuser: CREATE ROLE ${SQL_ROLE} NOLOGIN; GRANT ${SQL_ROLE} TO ${user})`,
  );
}

async function checkRedis(report: Report, url: string): Promise<void> {
  const { Redis } = await import('ioredis');
  const where = new URL(url);
  const shown = `${where.hostname}:${where.port || 6379}`;
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 5000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  redis.on('error', () => {});
  try {
    await redis.connect();
    const info = await redis.info('server');
    const found = /redis_version:([^\r\n]+)/.exec(info)?.[1] ?? 'unknown';
    const policy = /maxmemory_policy:([^\r\n]+)/.exec(await redis.info('memory'))?.[1];
    const evicts = policy !== undefined && policy !== 'noeviction';
    report(
      evicts ? 'warn' : 'ok',
      `Redis ${found} at ${shown}: reachable${evicts ? `, but maxmemory-policy is ${policy}: BullMQ needs noeviction` : ''}`,
    );
  } catch (err) {
    report('FAIL', `Redis at ${shown}: ${(err as Error).message}`);
  } finally {
    redis.disconnect();
  }
}

export async function doctor(env: NodeJS.ProcessEnv, out: NodeJS.WritableStream): Promise<number> {
  let failed = false;
  const report: Report = (level, what) => {
    if (level === 'FAIL') failed = true;
    out.write(`${level.padEnd(4)}  ${what}\n`);
  };
  report('ok', `Intake ${version()}`);
  const major = Number.parseInt(process.versions.node, 10);
  report(
    major >= 20 ? (major === 20 ? 'warn' : 'ok') : 'FAIL',
    `Node.js ${process.versions.node}${major === 20 ? ' (Node 20 reached its end of life in April 2026: use 22 or 24)' : major < 20 ? ' (Intake needs 20.19 or later)' : ''}`,
  );
  let config: Config;
  try {
    config = loadConfig(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    report('FAIL', `configuration: ${err.message}`);
    return 1;
  }
  const mode = config.redisUrl
    ? 'scale-out (PostgreSQL + Redis + BullMQ)'
    : config.databaseUrl
      ? 'PostgreSQL, in-process workers'
      : 'embedded (PGlite in DATA_DIR)';
  report('ok', `configuration: valid; mode ${mode}; listens on ${config.host}:${config.port}`);
  if (!config.databaseUrl) {
    checkDirectory(report, 'DATA_DIR', config.dataDir);
    if (config.embeddedFsync) report('ok', 'EMBEDDED_FSYNC: each commit is flushed to disk before it returns');
    else report('warn', 'EMBEDDED_FSYNC=false: a power failure can lose the last commits');
    const lock = join(config.dataDir, 'intake.lock');
    const owner = existsSync(lock) ? parseProcessId(readFileSync(lock, 'utf8')) : undefined;
    if (owner && isRunning(owner)) report('warn', `DATA_DIR is locked by pid ${owner.pid}: an Intake is running on it`);
  }
  if (config.uploadStore.kind === 'file') checkDirectory(report, 'UPLOAD_DIR', config.uploadDir);
  else report('ok', `UPLOAD_STORE s3://${config.uploadStore.bucket}/${config.uploadStore.prefix} (not checked here)`);
  // PostgreSQL mode keeps its uploads in DATA_DIR/uploads by default, as embedded mode does: with
  // an embedded Intake on the same DATA_DIR, each would take the other's files for its own (and
  // sweep them as left over).
  const embeddedThere = existsSync(join(config.dataDir, 'pgdata', 'PG_VERSION')) || existsSync(join(config.dataDir, 'intake.lock'));
  if (config.databaseUrl && config.uploadStore.kind === 'file' && !env.UPLOAD_DIR?.trim() && embeddedThere) {
    report(
      'warn',
      `UPLOAD_DIR ${config.uploadDir} (the default) is also where the embedded Intake in DATA_DIR ${config.dataDir} keeps its uploads: set UPLOAD_DIR (or DATA_DIR) to a folder of this PostgreSQL Intake's own`,
    );
  }
  if (config.databaseUrl) await checkPostgres(report, config.databaseUrl);
  if (config.redisUrl) await checkRedis(report, config.redisUrl);
  const loopback = ['127.0.0.1', 'localhost', '::1'].includes(config.host);
  if (config.apiTokens.length === 0 && !loopback)
    report('warn', `HOST ${config.host} without API_TOKENS: anyone who reaches the port can use the API`);
  report(
    config.secretKey ? 'ok' : 'warn',
    config.secretKey ? 'SECRET_KEY set: connections can be saved' : 'SECRET_KEY unset: no connection (Jira) can be saved',
  );
  if (config.webhooks.urls.length > 0 && !config.webhooks.secret)
    report('warn', 'WEBHOOK_URLS without WEBHOOK_SECRET: deliveries are not signed');
  out.write(failed ? 'Some checks failed (FAIL above).\n' : 'Nothing failed.\n');
  return failed ? 1 : 0;
}
