/**
 * Webhook deliveries: written in the transaction that ends a job (an outbox: a restart loses
 * none), claimed by one process at a time with a lease, each attempt and its answer kept.
 */
import type { Db, Queryable } from './db.js';

export interface NewDelivery {
  url: string;
  origin: 'callback' | 'config';
}

/**
 * One pending delivery per URL of a job's end, created when the job's end is written (NOW() is
 * when its transaction began, before the publish). $1 job_id, $2 version, $3 event, $4 body, $5 the deliveries */
export async function insertDeliveries(
  tx: Queryable,
  jobId: string,
  version: number,
  event: string,
  body: string,
  deliveries: NewDelivery[],
): Promise<void> {
  await tx.query(
    `INSERT INTO intake_webhook_deliveries (job_id, job_version, event, body, url, origin, created_at, next_attempt_at)
     SELECT $1, $2, $3, $4, d.url, d.origin, clock_timestamp(), clock_timestamp() FROM jsonb_to_recordset($5::jsonb) AS d(url TEXT, origin TEXT)`,
    [jobId, version, event, body, JSON.stringify(deliveries)],
  );
}

export interface DueDelivery {
  delivery_id: string;
  job_id: string;
  event: string;
  url: string;
  origin: 'callback' | 'config';
  body: string;
  attempts: number;
  created_at: Date;
}

/**
 * Up to `limit` deliveries due now, each leased to the caller for `leaseMs` and its attempt
 * counted. SKIP LOCKED and the lease keep two processes from attempting the same delivery at once.
 */
export async function claimDue(db: Queryable, limit: number, leaseMs: number): Promise<DueDelivery[]> {
  const { rows } = await db.query<DueDelivery>(
    `UPDATE intake_webhook_deliveries SET attempts = attempts + 1, lease_until = now() + make_interval(secs => $2 / 1000.0)
     WHERE delivery_id IN (
       SELECT delivery_id FROM intake_webhook_deliveries
       WHERE status = 'pending' AND next_attempt_at <= now() AND (lease_until IS NULL OR lease_until < now())
       ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
     RETURNING delivery_id::text, job_id, event, url, origin, body, attempts, created_at`,
    [limit, leaseMs],
  );
  return rows;
}

export interface AttemptResult {
  startedAt: Date;
  durationMs: number;
  statusCode: number | null;
  error: string | null;
  response: string | null;
}

/**
 * An attempt's result. Delivered on a 2xx with its whole answer; otherwise tried again after
 * `retryInMs` (the last try at `giveUpAt` at the latest), or given up (status failed) once
 * `giveUpAt` has passed. Guarded by the attempt number: a holder whose lease ran out (and whose
 * delivery was claimed again) changes nothing but its log.
 */
export async function recordAttempt(
  db: Db,
  delivery: DueDelivery,
  result: AttemptResult,
  retryInMs: number,
  giveUpAt: Date,
): Promise<void> {
  const delivered = result.error === null && result.statusCode !== null && result.statusCode >= 200 && result.statusCode < 300;
  // TEXT holds no NUL: an answer with one must not keep the attempt from being recorded.
  const clean = (text: string | null) => text?.replace(/\u0000/g, '\ufffd') ?? null;
  await db.transaction(async (tx) => {
    await tx.query(
      `INSERT INTO intake_webhook_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error, response)
       VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
      [
        delivery.delivery_id,
        delivery.attempts,
        result.startedAt,
        result.durationMs,
        result.statusCode,
        clean(result.error),
        clean(result.response),
      ],
    );
    const next = new Date(Math.min(Date.now() + retryInMs, giveUpAt.getTime()));
    const error = delivered ? null : clean(result.error ?? `HTTP ${result.statusCode}`);
    await tx.query(
      `UPDATE intake_webhook_deliveries
       SET status = CASE WHEN $3 THEN 'delivered' WHEN now() >= $5::timestamptz THEN 'failed' ELSE 'pending' END,
           delivered_at = CASE WHEN $3 THEN now() END, next_attempt_at = $4, lease_until = NULL, last_error = $6
       WHERE delivery_id = $1 AND attempts = $2 AND status = 'pending'`,
      [delivery.delivery_id, delivery.attempts, delivered, next, giveUpAt, error],
    );
  });
}

/** Deliveries still pending past their last day (their attempts kept failing to be recorded): given up. */
export async function failExpired(db: Queryable, maxAgeMs: number): Promise<void> {
  await db.query(
    `UPDATE intake_webhook_deliveries SET status = 'failed', lease_until = NULL, last_error = COALESCE(last_error, 'given up after a day')
     WHERE status = 'pending' AND created_at < now() - make_interval(secs => $1::bigint / 1000.0)`,
    [maxAgeMs],
  );
}

export interface DeliveryRow {
  delivery_id: string;
  event: string;
  url: string;
  status: string;
  attempts: number;
  created_at: Date;
  next_attempt_at: Date;
  delivered_at: Date | null;
  last_error: string | null;
  log: {
    attempt: number;
    started_at: string;
    duration_ms: number;
    status_code: number | null;
    error: string | null;
    response: string | null;
  }[];
}

/** A job's deliveries, oldest first, each with its attempts. $1 job_id */
export async function listDeliveries(db: Queryable, jobId: string): Promise<DeliveryRow[]> {
  const { rows } = await db.query<DeliveryRow>(
    `SELECT d.delivery_id::text, d.event, d.url, d.status, d.attempts, d.created_at, d.next_attempt_at, d.delivered_at, d.last_error,
            COALESCE((SELECT jsonb_agg(jsonb_build_object('attempt', a.attempt, 'started_at', a.started_at, 'duration_ms', a.duration_ms,
                        'status_code', a.status_code, 'error', a.error, 'response', a.response) ORDER BY a.attempt)
                      FROM intake_webhook_attempts a WHERE a.delivery_id = d.delivery_id), '[]') AS log
     FROM intake_webhook_deliveries d WHERE d.job_id = $1 ORDER BY d.delivery_id`,
    [jobId],
  );
  return rows;
}

/** Finished deliveries of jobs that no longer exist (pending ones are still delivered). */
export async function deleteOrphanDeliveries(db: Queryable): Promise<number> {
  const { rows } = await db.query(
    `DELETE FROM intake_webhook_deliveries d WHERE d.status <> 'pending' AND NOT EXISTS (SELECT 1 FROM ingest_jobs j WHERE j.job_id = d.job_id)
     RETURNING 1`,
  );
  return rows.length;
}
