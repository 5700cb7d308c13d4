import { isAbsolute, join, resolve } from 'node:path';
import { datasetNameProblem } from './datasets/names.js';
import { DEFAULT_LIMITS, type InputLimits } from './formats/limits.js';
import { webhookUrlProblem } from './net/webhook-url.js';
import { parseSecretKey } from './core/secrets.js';
import { defaultMaxConnections } from './core/sockets.js';

/** Everything Intake reads from the environment, validated once at start. */
export interface Config {
  port: number;
  host: string;
  dataDir: string;
  /** Embedded mode: each commit is flushed to disk (fsync); off trades the last commits before a power failure for speed. */
  embeddedFsync: boolean;
  /** Embedded mode: the most memory PGlite's PostgreSQL may take (it never gives memory back). */
  embeddedMaxMemoryMb: number;
  uploadDir: string;
  /**
   * The largest CSV file (its bytes as stored) loaded by the fast path, COPY of the file itself
   * (PostgreSQL mode); larger ones, and any with FAST_PATH_MAX_BYTES=0, by the checked path,
   * which commits checkpoints a resumed run goes on from.
   */
  fastPathMaxBytes: number;
  /** Where uploads are kept: UPLOAD_DIR (the default), or a bucket (UPLOAD_STORE=s3://bucket/prefix). */
  uploadStore: { kind: 'file' } | { kind: 's3'; bucket: string; prefix: string };
  /** How Intake reaches S3 (uploads in a bucket, imports from s3://): credentials come from the AWS SDK's own chain. */
  s3: {
    endpoint: string | undefined;
    region: string;
    forcePathStyle: boolean;
    /** AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) of this environment, if set; otherwise the SDK's chain (profile, instance role …). */
    credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  };
  /** SECRET_KEY: seals the secrets of connections (unset: the API stores none). */
  secretKey: Buffer | undefined;
  webhooks: WebhookSettings;
  /** Imports by URL may reach loopback, private and link-local addresses (off: no SSRF). */
  importAllowPrivate: boolean;
  /** An import's connection and idle time, and its transient errors' retries. */
  importTimeoutMs: number;
  databaseUrl: string | undefined;
  redisUrl: string | undefined;
  maxUploadBytes: number;
  maxJsonBodyBytes: number;
  workerConcurrency: number;
  batchSize: number;
  pgPoolSize: number;
  shutdownGraceMs: number;
  logLevel: string;
  /** auto: readable lines on a terminal, JSON lines otherwise. */
  logFormat: 'auto' | 'json' | 'pretty';
  /** Prefix of every Redis key Intake writes (cache, queue, channel): several Intakes can share a Redis. */
  redisKeyPrefix: string;
  cacheTtlSeconds: number;
  maxJobAttempts: number;
  reconcileIntervalMs: number;
  workerLockMs: number;
  /** Finished jobs older than this many days are deleted in the background; 0: kept forever. */
  jobRetentionDays: number;
  retentionIntervalMs: number;
  /** Bearer tokens any of which opens the API; empty: no access control (loopback by default). */
  apiTokens: string[];
  /** METRICS_TOKEN: with one (or several, comma-separated), /metrics needs it as a bearer token. */
  metricsTokens: string[];
  /** Origins allowed to call the API from a browser (CORS); empty: same origin only. */
  corsOrigins: string[];
  /** Base of the status URLs Intake answers with (https://intake.example.com); unset: relative URLs. */
  publicUrl: string | undefined;
  /** Limits on what one input may hold (see README, "Limits"). */
  limits: InputLimits;
  /** The PostgreSQL schema holding the datasets' tables. */
  datasetSchema: string;
  /** Limits of a query of POST /api/sql: its time, its planner's cost, the rows it answers. */
  sql: { timeoutMs: number; maxCost: number; maxRows: number; maxResultBytes: number };
  /** Open event streams this process serves at once; more answer 429. */
  maxEventStreams: number;
  /** Schedules at most (MAX_SCHEDULES). */
  maxSchedules: number;
  /** Jobs all schedules together may start per minute, every process together (MAX_SCHEDULED_JOBS_PER_MINUTE). */
  maxScheduledJobsPerMinute: number;
  /**
   * A request body (upload or JSON) must deliver at least `bodyMinBytesPerSecond` over every
   * window of this length, or it is cut off with 408 and nothing is kept.
   */
  bodyIdleTimeoutMs: number;
  bodyMinBytesPerSecond: number;
  /** ... and at least this on average over the whole body, from its second window on (0: no such bound). */
  bodyMinAverageBytesPerSecond: number;
  /** Uploads (multipart) received at once by this process; more answer 503 with Retry-After. */
  maxUploadsInFlight: number;
  /** Posted bodies (POST /api/ingest/json, each held in memory) received at once; more answer 503 with Retry-After. */
  maxJsonBodiesInFlight: number;
  /** Datasets Intake holds at most: a load that would create one more is refused (409) or fails. */
  maxDatasets: number;
  /** Connections the HTTP server holds at once (below the open-files limit), and from one client address (0: no such cap). */
  maxConnections: number;
  maxConnectionsPerAddress: number;
  /** A request's headers must arrive whole within this time, or its connection is answered 408 and closed. */
  headersTimeoutMs: number;
  /** An export (GET /api/datasets/{name}/export) whose client takes nothing for this long is cut off. */
  exportIdleTimeoutMs: number;
}

export interface WebhookSettings {
  urls: string[];
  secret?: string;
  timeoutMs: number;
  /** The wait before the first retry; each later one doubles, up to MAX_RETRY_MS. */
  retryMs: number;
  /** Callback URLs may reach loopback and private addresses (IMPORT_ALLOW_PRIVATE). */
  allowPrivate: boolean;
}

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable} ${message}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw);
  if (!/^\s*\d+\s*$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(name, `must be an integer from ${min} to ${max} (got "${raw}")`);
  }
  return value;
}

function url(env: Env, name: string, protocols: string[]): string | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(name, `must be a URL such as ${protocols[0]}//host:port/... (got "${raw}")`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(name, `must use ${protocols.join(' or ')} (got "${parsed.protocol}")`);
  }
  return raw;
}

function path(env: Env, name: string, fallback: string, cwd: string): string {
  const raw = env[name]?.trim() || fallback;
  return isAbsolute(raw) ? raw : resolve(cwd, raw);
}

function list(env: Env, name: string): string[] {
  return (env[name] ?? '')
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

function tokens(env: Env, name = 'API_TOKENS'): string[] {
  const values = list(env, name);
  for (const [index, token] of values.entries()) {
    // Never echo a token: name it by position.
    if (token.length < 16)
      throw new ConfigError(name, `token ${index + 1} is shorter than 16 characters: use long random tokens (e.g. openssl rand -hex 32)`);
    if (!/^[\x21-\x7e]+$/.test(token)) throw new ConfigError(name, `token ${index + 1} must be printable ASCII without spaces`);
  }
  return values;
}

function publicUrl(env: Env): string | undefined {
  const raw = url(env, 'PUBLIC_URL', ['http:', 'https:']);
  if (raw === undefined) return undefined;
  const parsed = new URL(raw);
  if (parsed.search || parsed.hash || parsed.username || parsed.password) {
    throw new ConfigError('PUBLIC_URL', `must be a plain base URL such as https://intake.example.com (got "${raw}")`);
  }
  return raw.replace(/\/+$/, '');
}

function origins(env: Env): string[] {
  const values = list(env, 'CORS_ORIGINS');
  for (const origin of values) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(origin);
    } catch {
      // not a URL: refused below
    }
    if (!parsed || !['http:', 'https:'].includes(parsed.protocol) || parsed.origin !== origin.replace(/\/$/, '')) {
      throw new ConfigError('CORS_ORIGINS', `must be origins such as https://app.example.com, comma-separated (got "${origin}")`);
    }
  }
  return values.map((origin) => origin.replace(/\/$/, ''));
}

function boolean(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === '') return fallback;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new ConfigError(name, `must be true or false (got "${env[name]}")`);
}

function webhooks(env: Env): WebhookSettings {
  const urls = list(env, 'WEBHOOK_URLS');
  for (const [index, raw] of urls.entries()) {
    const problem = webhookUrlProblem(raw);
    if (problem) throw new ConfigError('WEBHOOK_URLS', `URL ${index + 1}: ${problem}`);
  }
  const secret = env.WEBHOOK_SECRET?.trim() || undefined;
  if (secret !== undefined && secret.length < 16)
    throw new ConfigError('WEBHOOK_SECRET', 'is shorter than 16 characters: use a long random secret (e.g. openssl rand -hex 32)');
  return {
    urls,
    secret,
    timeoutMs: integer(env, 'WEBHOOK_TIMEOUT_MS', 10_000, 100, 300_000),
    retryMs: integer(env, 'WEBHOOK_RETRY_MS', 10_000, 10, 3_600_000),
    allowPrivate: boolean(env, 'IMPORT_ALLOW_PRIVATE', false),
  };
}

function logFormat(env: Env): Config['logFormat'] {
  const raw = env.LOG_FORMAT?.trim().toLowerCase() || 'auto';
  if (raw !== 'auto' && raw !== 'json' && raw !== 'pretty')
    throw new ConfigError('LOG_FORMAT', `must be auto, json or pretty (got "${env.LOG_FORMAT}")`);
  return raw;
}

function secretKey(env: Env): Buffer | undefined {
  const raw = env.SECRET_KEY?.trim();
  if (!raw) return undefined;
  try {
    return parseSecretKey(raw);
  } catch (err) {
    throw new ConfigError('SECRET_KEY', (err as Error).message);
  }
}

/** UPLOAD_STORE: unset or "file" (UPLOAD_DIR), or s3://bucket/prefix. */
function uploadStore(env: Env): Config['uploadStore'] {
  const raw = env.UPLOAD_STORE?.trim();
  if (!raw || raw === 'file') return { kind: 'file' };
  const match = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(raw);
  if (!match) throw new ConfigError('UPLOAD_STORE', `must be file or s3://bucket/prefix (got "${raw}")`);
  const prefix = (match[2] ?? '').replace(/^\/+|\/+$/g, '');
  return { kind: 's3', bucket: match[1]!, prefix: prefix === '' ? '' : `${prefix}/` };
}

function schemaName(env: Env): string {
  const raw = env.DATASET_SCHEMA?.trim() || 'datasets';
  const problem = datasetNameProblem(raw);
  if (problem)
    throw new ConfigError('DATASET_SCHEMA', problem.replace('a dataset name', 'a schema name').replace('dataset name', 'schema name'));
  if (raw === 'public' || raw.startsWith('pg_') || raw === 'intake_stage' || raw === 'information_schema') {
    throw new ConfigError('DATASET_SCHEMA', `"${raw}" is taken: choose a schema of its own for the datasets (default datasets)`);
  }
  return raw;
}

export function loadConfig(env: Env = process.env, cwd: string = process.cwd()): Config {
  const dataDir = path(env, 'DATA_DIR', './data', cwd);
  const logLevel = env.LOG_LEVEL?.trim() || 'info';
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')} (got "${logLevel}")`);
  }
  const databaseUrl = url(env, 'DATABASE_URL', ['postgres:', 'postgresql:']);
  const redisUrl = url(env, 'REDIS_URL', ['redis:', 'rediss:']);
  if (redisUrl && !databaseUrl) {
    throw new ConfigError('REDIS_URL', 'needs DATABASE_URL as well: workers in other processes share the job rows through PostgreSQL');
  }
  const apiTokens = tokens(env);
  return {
    port: integer(env, 'PORT', 8000, 0, 65535),
    // Without tokens anyone who reaches the port can use the API: loopback unless asked.
    host: env.HOST?.trim() || (apiTokens.length > 0 ? '0.0.0.0' : '127.0.0.1'),
    dataDir,
    embeddedFsync: boolean(env, 'EMBEDDED_FSYNC', true),
    // WebAssembly's 32-bit memory, as PGlite builds it, holds at most 2 GiB.
    embeddedMaxMemoryMb: integer(env, 'EMBEDDED_MAX_MEMORY_MB', 512, 128, 2048),
    uploadDir: path(env, 'UPLOAD_DIR', join(dataDir, 'uploads'), cwd),
    uploadStore: uploadStore(env),
    s3: {
      endpoint: url(env, 'S3_ENDPOINT', ['http:', 'https:']),
      region: env.S3_REGION?.trim() || env.AWS_REGION?.trim() || 'us-east-1',
      // S3-compatible servers (MinIO, s3rver …) answer on one host: bucket in the path.
      forcePathStyle: boolean(env, 'S3_FORCE_PATH_STYLE', env.S3_ENDPOINT !== undefined && env.S3_ENDPOINT.trim() !== ''),
      ...(env.AWS_ACCESS_KEY_ID &&
        env.AWS_SECRET_ACCESS_KEY && {
          credentials: {
            accessKeyId: env.AWS_ACCESS_KEY_ID,
            secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
            ...(env.AWS_SESSION_TOKEN && { sessionToken: env.AWS_SESSION_TOKEN }),
          },
        }),
    },
    importAllowPrivate: boolean(env, 'IMPORT_ALLOW_PRIVATE', false),
    secretKey: secretKey(env),
    webhooks: webhooks(env),
    importTimeoutMs: integer(env, 'IMPORT_TIMEOUT_MS', 30_000, 100, 3_600_000),
    databaseUrl,
    redisUrl,
    maxUploadBytes: integer(env, 'MAX_UPLOAD_BYTES', 1024 ** 3, 1, Number.MAX_SAFE_INTEGER),
    maxJsonBodyBytes: integer(env, 'MAX_JSON_BODY_BYTES', 32 * 1024 ** 2, 1, 1024 ** 3),
    workerConcurrency: integer(env, 'WORKER_CONCURRENCY', 1, 0, 64),
    // PGlite runs each batch on the event loop's thread: smaller batches keep the API
    // responsive; PostgreSQL loads faster in larger ones.
    batchSize: integer(env, 'BATCH_SIZE', databaseUrl ? 5000 : 1000, 1, 100_000),
    fastPathMaxBytes: integer(env, 'FAST_PATH_MAX_BYTES', 1024 ** 3, 0, Number.MAX_SAFE_INTEGER),
    pgPoolSize: integer(env, 'PG_POOL_SIZE', 10, 1, 1000),
    shutdownGraceMs: integer(env, 'SHUTDOWN_GRACE_MS', 10_000, 0, 600_000),
    logLevel,
    logFormat: logFormat(env),
    redisKeyPrefix: env.REDIS_KEY_PREFIX?.trim() ?? '',
    cacheTtlSeconds: integer(env, 'CACHE_TTL_SECONDS', 300, 1, 86_400),
    // In-process workers share the API's process: a job that crashes it takes the API down
    // with it, so it gets one resumption, not four.
    maxJobAttempts: integer(env, 'MAX_JOB_ATTEMPTS', redisUrl ? 5 : 2, 1, 100),
    reconcileIntervalMs: integer(env, 'RECONCILE_INTERVAL_MS', 10_000, 100, 3_600_000),
    workerLockMs: integer(env, 'WORKER_LOCK_MS', 30_000, 1000, 3_600_000),
    jobRetentionDays: integer(env, 'JOB_RETENTION_DAYS', 0, 0, 36_500),
    retentionIntervalMs: integer(env, 'RETENTION_INTERVAL_MS', 3_600_000, 100, 86_400_000),
    apiTokens,
    metricsTokens: tokens(env, 'METRICS_TOKEN'),
    corsOrigins: origins(env),
    publicUrl: publicUrl(env),
    limits: {
      maxColumns: integer(env, 'MAX_COLUMNS', DEFAULT_LIMITS.maxColumns, 1, 100_000),
      maxFieldLength: integer(env, 'MAX_FIELD_LENGTH', DEFAULT_LIMITS.maxFieldLength, 1, 256 * 1024 ** 2),
      maxRecordLength: integer(env, 'MAX_RECORD_LENGTH', DEFAULT_LIMITS.maxRecordLength, 1, 256 * 1024 ** 2),
      maxJsonDepth: integer(env, 'MAX_JSON_DEPTH', DEFAULT_LIMITS.maxJsonDepth, 1, 1024),
      maxDecompressedBytes: integer(env, 'MAX_DECOMPRESSED_BYTES', DEFAULT_LIMITS.maxDecompressedBytes, 1, Number.MAX_SAFE_INTEGER),
      maxDecompressionRatio: integer(env, 'MAX_DECOMPRESSION_RATIO', DEFAULT_LIMITS.maxDecompressionRatio, 0, 1_000_000),
    },
    datasetSchema: schemaName(env),
    sql: {
      timeoutMs: integer(env, 'SQL_TIMEOUT_MS', 10_000, 100, 600_000),
      // PGlite cannot stop a running query, so its cost bound is its time bound: about ten
      // seconds of the slowest plans at the default (a scan of a 1,000,000-row dataset costs about 25,000).
      maxCost: integer(env, 'SQL_MAX_COST', databaseUrl ? 10_000_000 : 100_000, 1, Number.MAX_SAFE_INTEGER),
      maxRows: integer(env, 'SQL_MAX_ROWS', 1000, 1, 100_000),
      // A whole result read (an export, a derived dataset) ends here: a query can yield rows
      // for ever (a series of dates up to a value read from the data), which no estimate shows.
      maxResultBytes: integer(env, 'SQL_MAX_RESULT_BYTES', 16 * 1024 ** 3, 1, Number.MAX_SAFE_INTEGER),
    },
    maxEventStreams: integer(env, 'MAX_EVENT_STREAMS', 1000, 1, 1_000_000),
    maxSchedules: integer(env, 'MAX_SCHEDULES', 1000, 1, 100_000),
    maxScheduledJobsPerMinute: integer(env, 'MAX_SCHEDULED_JOBS_PER_MINUTE', 60, 1, 100_000),
    bodyIdleTimeoutMs: integer(env, 'BODY_IDLE_TIMEOUT_MS', 30_000, 100, 3_600_000),
    bodyMinBytesPerSecond: integer(env, 'BODY_MIN_BYTES_PER_SECOND', 1024, 0, 1024 ** 3),
    bodyMinAverageBytesPerSecond: integer(env, 'BODY_MIN_AVERAGE_BYTES_PER_SECOND', 32 * 1024, 0, 1024 ** 3),
    maxUploadsInFlight: integer(env, 'MAX_UPLOADS_IN_FLIGHT', 256, 1, 100_000),
    maxJsonBodiesInFlight: integer(env, 'MAX_JSON_BODIES_IN_FLIGHT', 16, 1, 100_000),
    maxDatasets: integer(env, 'MAX_DATASETS', 10_000, 1, 1_000_000),
    maxConnections: integer(env, 'MAX_CONNECTIONS', defaultMaxConnections(), 1, 1_000_000),
    maxConnectionsPerAddress: integer(env, 'MAX_CONNECTIONS_PER_ADDRESS', 0, 0, 1_000_000),
    headersTimeoutMs: integer(env, 'HEADERS_TIMEOUT_MS', 10_000, 100, 600_000),
    exportIdleTimeoutMs: integer(env, 'EXPORT_IDLE_TIMEOUT_MS', 30_000, 100, 3_600_000),
  };
}
