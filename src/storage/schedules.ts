/** Schedules: an import run every `every_ms`; the jobs a schedule made name it (ingest_jobs.schedule_id). */
import { LOCK_KEYS } from '../core/lock-keys.js';
import type { Queryable } from './db.js';

export interface ScheduleRow {
  schedule_id: string;
  import: Record<string, unknown>;
  every: string;
  every_ms: string;
  paused: boolean;
  created_at: Date;
  next_run_at: Date;
  last_run_at: Date | null;
  last_job_id: string | null;
  last_error: string | null;
  runs: number;
  skipped: number;
  deferred: number;
  consecutive_failures: number;
  failing_since: Date | null;
}

const COLUMNS =
  'schedule_id, import, every, every_ms::text, paused, created_at, next_run_at, last_run_at, last_job_id, last_error, runs, skipped, deferred, consecutive_failures, failing_since';

/**
 * A new schedule, unless there are `max` already (undefined then): counted and inserted under
 * a transaction-scoped advisory lock, so creates at once cannot pass the limit together.
 * Run it in a transaction.
 */
export async function insertSchedule(
  tx: Queryable,
  max: number,
  id: string,
  body: Record<string, unknown>,
  every: string,
  everyMs: number,
  paused: boolean,
): Promise<ScheduleRow | undefined> {
  await tx.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEYS.scheduleCount]);
  const { rows } = await tx.query<ScheduleRow>(
    `INSERT INTO intake_schedules (schedule_id, import, every, every_ms, paused, next_run_at)
     SELECT $1, $2, $3, $4::bigint, $5, now() + make_interval(secs => $4::bigint / 1000.0)
     WHERE (SELECT count(*) FROM intake_schedules) < $6
     RETURNING ${COLUMNS}`,
    [id, JSON.stringify(body), every, everyMs, paused, max],
  );
  return rows[0];
}

/**
 * Within the budget of jobs schedules may start per minute (every process together): takes
 * the budget's lock for the rest of the transaction, so the count and the job inserted after
 * it are one. Answers undefined when there is room, else when the oldest job of the last
 * minute leaves it.
 */
export async function budgetFullUntil(tx: Queryable, perMinute: number): Promise<Date | undefined> {
  await tx.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEYS.scheduleBudget]);
  const { rows } = await tx.query<{ n: string; oldest: Date | null }>(
    `SELECT count(*) AS n, min(submitted_at) AS oldest FROM ingest_jobs
     WHERE schedule_id IS NOT NULL AND submitted_at > now() - interval '1 minute'`,
  );
  const { n, oldest } = rows[0]!;
  if (Number(n) < perMinute || !oldest) return undefined;
  return new Date(oldest.getTime() + 60_000);
}

export async function listSchedules(db: Queryable): Promise<ScheduleRow[]> {
  return (await db.query<ScheduleRow>(`SELECT ${COLUMNS} FROM intake_schedules ORDER BY created_at, schedule_id`)).rows;
}

export async function findSchedule(db: Queryable, id: string, lock = false): Promise<ScheduleRow | undefined> {
  return (await db.query<ScheduleRow>(`SELECT ${COLUMNS} FROM intake_schedules WHERE schedule_id = $1${lock ? ' FOR UPDATE' : ''}`, [id]))
    .rows[0];
}

/** Paused, or running again from one interval after now (its failures forgotten: it starts afresh). */
export async function updatePaused(db: Queryable, id: string, paused: boolean): Promise<ScheduleRow | undefined> {
  const { rows } = await db.query<ScheduleRow>(
    `UPDATE intake_schedules SET paused = $2,
       consecutive_failures = CASE WHEN $2 OR NOT paused THEN consecutive_failures ELSE 0 END,
       failing_since = CASE WHEN $2 OR NOT paused THEN failing_since ELSE NULL END,
       next_run_at = CASE WHEN $2 OR NOT paused THEN next_run_at ELSE now() + make_interval(secs => every_ms / 1000.0) END
     WHERE schedule_id = $1 RETURNING ${COLUMNS}`,
    [id, paused],
  );
  return rows[0];
}

/**
 * A new interval, as written and in ms. The next run is one new interval after the last run (one
 * from now if it has not run yet), never before now: a schedule already overdue by its new
 * interval runs at its next beat. The same interval (`2m` for `120s`) changes only how it is
 * written. Its failures are kept. $1 id, $2 every, $3 every_ms
 */
export async function updateEvery(db: Queryable, id: string, every: string, everyMs: number): Promise<ScheduleRow | undefined> {
  const { rows } = await db.query<ScheduleRow>(
    `UPDATE intake_schedules SET every = $2, every_ms = $3::bigint,
       next_run_at = CASE WHEN every_ms = $3::bigint THEN next_run_at
         ELSE GREATEST(now(), COALESCE(last_run_at, now()) + make_interval(secs => $3::bigint / 1000.0)) END
     WHERE schedule_id = $1 RETURNING ${COLUMNS}`,
    [id, every, everyMs],
  );
  return rows[0];
}

export async function deleteSchedule(db: Queryable, id: string): Promise<boolean> {
  return (await db.query('DELETE FROM intake_schedules WHERE schedule_id = $1 RETURNING 1', [id])).rows.length > 0;
}

/** Schedules due by their own clock (embedded and PostgreSQL modes). */
export async function listDue(db: Queryable): Promise<string[]> {
  const { rows } = await db.query<{ schedule_id: string }>(
    'SELECT schedule_id FROM intake_schedules WHERE NOT paused AND next_run_at <= now() ORDER BY next_run_at LIMIT 100',
  );
  return rows.map((row) => row.schedule_id);
}

/**
 * A beat's outcome: a job made, a beat skipped (the last run is still going), deferred (the
 * budget is spent: tried again at `until`), or failed (no job could be made). `paused`: the
 * schedule failed for a day and was paused.
 */
export type TickOutcome = { ran: string } | { skipped: true } | { deferred: Date } | { failed: string; paused?: boolean };

/** What a beat learned of the schedule's health: its failures in a row, since when, and the error to show. */
export interface Health {
  failures: number;
  failingSince: Date | null;
  error: string | null;
  paused: boolean;
}

/** A tick's outcome recorded, and when the next run is. $1 id */
export async function updateTicked(db: Queryable, id: string, outcome: TickOutcome, nextRunAt: Date, health?: Health): Promise<void> {
  const ran = 'ran' in outcome ? outcome.ran : null;
  await db.query(
    `UPDATE intake_schedules SET
       runs = runs + (CASE WHEN $2::uuid IS NULL THEN 0 ELSE 1 END),
       skipped = skipped + (CASE WHEN $3 THEN 1 ELSE 0 END),
       deferred = deferred + (CASE WHEN $4 THEN 1 ELSE 0 END),
       last_job_id = COALESCE($2::uuid, last_job_id),
       last_run_at = CASE WHEN $2::uuid IS NULL THEN last_run_at ELSE clock_timestamp() END,
       last_error = CASE WHEN $6 THEN $7 ELSE last_error END,
       consecutive_failures = CASE WHEN $6 THEN $8 ELSE consecutive_failures END,
       failing_since = CASE WHEN $6 THEN $9::timestamptz ELSE failing_since END,
       paused = paused OR $10,
       next_run_at = $5
     WHERE schedule_id = $1`,
    [
      id,
      ran,
      'skipped' in outcome,
      'deferred' in outcome,
      nextRunAt,
      health !== undefined,
      health?.error ?? null,
      health?.failures ?? 0,
      health?.failingSince ?? null,
      health?.paused ?? false,
    ],
  );
}

/** A schedule's last jobs, newest first: their payload JSON. $1 id, $2 limit */
export async function listRuns(db: Queryable, id: string, limit: number): Promise<string[]> {
  const { rows } = await db.query<{ job_id: string }>(
    'SELECT job_id FROM ingest_jobs WHERE schedule_id = $1 ORDER BY submitted_at DESC, job_id DESC LIMIT $2',
    [id, limit],
  );
  return rows.map((row) => row.job_id);
}
