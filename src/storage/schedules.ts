/** Schedules: an import run every `every_ms`; the jobs a schedule made name it (ingest_jobs.schedule_id). */
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
}

const COLUMNS = 'schedule_id, import, every, every_ms::text, paused, created_at, next_run_at, last_run_at, last_job_id, last_error, runs, skipped';

export async function insertSchedule(db: Queryable, id: string, body: Record<string, unknown>, every: string, everyMs: number, paused: boolean): Promise<ScheduleRow> {
  const { rows } = await db.query<ScheduleRow>(
    `INSERT INTO intake_schedules (schedule_id, import, every, every_ms, paused, next_run_at)
     VALUES ($1, $2, $3, $4::bigint, $5, now() + make_interval(secs => $4::bigint / 1000.0)) RETURNING ${COLUMNS}`,
    [id, JSON.stringify(body), every, everyMs, paused],
  );
  return rows[0]!;
}

export async function listSchedules(db: Queryable): Promise<ScheduleRow[]> {
  return (await db.query<ScheduleRow>(`SELECT ${COLUMNS} FROM intake_schedules ORDER BY created_at, schedule_id`)).rows;
}

export async function findSchedule(db: Queryable, id: string, lock = false): Promise<ScheduleRow | undefined> {
  return (await db.query<ScheduleRow>(`SELECT ${COLUMNS} FROM intake_schedules WHERE schedule_id = $1${lock ? ' FOR UPDATE' : ''}`, [id])).rows[0];
}

/** Paused, or running again from one interval after now. */
export async function updatePaused(db: Queryable, id: string, paused: boolean): Promise<ScheduleRow | undefined> {
  const { rows } = await db.query<ScheduleRow>(
    `UPDATE intake_schedules SET paused = $2,
       next_run_at = CASE WHEN $2 OR NOT paused THEN next_run_at ELSE now() + make_interval(secs => every_ms / 1000.0) END
     WHERE schedule_id = $1 RETURNING ${COLUMNS}`,
    [id, paused],
  );
  return rows[0];
}

export async function deleteSchedule(db: Queryable, id: string): Promise<boolean> {
  return (await db.query('DELETE FROM intake_schedules WHERE schedule_id = $1 RETURNING 1', [id])).rows.length > 0;
}

/** Schedules due by their own clock (embedded and PostgreSQL modes). */
export async function listDue(db: Queryable): Promise<string[]> {
  const { rows } = await db.query<{ schedule_id: string }>('SELECT schedule_id FROM intake_schedules WHERE NOT paused AND next_run_at <= now() ORDER BY next_run_at LIMIT 100');
  return rows.map((row) => row.schedule_id);
}

export type TickOutcome = { ran: string } | { skipped: true } | { failed: string };

/** A tick's outcome recorded, and when the next run is. $1 id */
export async function updateTicked(db: Queryable, id: string, outcome: TickOutcome, nextRunAt: Date): Promise<void> {
  const ran = 'ran' in outcome ? outcome.ran : null;
  await db.query(
    `UPDATE intake_schedules SET
       runs = runs + (CASE WHEN $2::uuid IS NULL THEN 0 ELSE 1 END),
       skipped = skipped + (CASE WHEN $3 THEN 1 ELSE 0 END),
       last_job_id = COALESCE($2::uuid, last_job_id),
       last_run_at = CASE WHEN $2::uuid IS NULL THEN last_run_at ELSE clock_timestamp() END,
       last_error = CASE WHEN $3 THEN last_error ELSE $4 END,
       next_run_at = $5
     WHERE schedule_id = $1`,
    [id, ran, 'skipped' in outcome, 'failed' in outcome ? outcome.failed : null, nextRunAt],
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
