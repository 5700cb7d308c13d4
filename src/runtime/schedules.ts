/**
 * Schedules run an import every so often. The schedule rows are the truth; what wakes them
 * differs: embedded and on PostgreSQL alone, a loop in each process reads the ones due; in
 * scale-out mode, BullMQ's job schedulers (one per schedule, kept in Redis, set again from the
 * rows at every start). Either way a beat is one transaction on the locked schedule row: a
 * schedule whose last job is still queued or running skips the beat, so it never overlaps itself.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { Dispatcher } from '../jobs/dispatcher.js';
import type { JobEvents } from '../live/job-events.js';
import type { ImportSettings } from '../sources/imports.js';
import { prepareImport } from '../jobs/import-job.js';
import { announce } from '../jobs/submit.js';
import type { Db } from '../storage/db.js';
import { findJob, insertJob, type JobRow, type NewJob } from '../storage/jobs.js';
import {
  budgetFullUntil,
  findSchedule,
  listDue,
  updateTicked,
  type Health,
  type ScheduleRow,
  type TickOutcome,
} from '../storage/schedules.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
export const MIN_EVERY_MS = 1000;
export const MAX_EVERY_MS = 366 * 86_400_000;

/** "15m", "2s", "1h30m" … in milliseconds, or undefined when it is not such a duration. */
export function parseEvery(raw: string): number | undefined {
  const text = raw.trim().toLowerCase();
  if (!/^(\d+(ms|s|m|h|d))+$/.test(text)) return undefined;
  let total = 0;
  for (const [, n, unit] of text.matchAll(/(\d+)(ms|s|m|h|d)/g)) total += Number(n) * UNITS[unit!]!;
  return total;
}

export interface ScheduleDeps {
  db: Db;
  settings: ImportSettings;
  events: JobEvents;
  dispatcher: Dispatcher;
  log: FastifyBaseLogger;
  /** Jobs all schedules together may start per minute (MAX_SCHEDULED_JOBS_PER_MINUTE). */
  maxJobsPerMinute: number;
}

// A schedule whose runs keep failing: from the BACKOFF_AFTER-th failure in a row, each next run
// waits twice as long as the one before (up to MAX_BACKOFF_MS, never less than its interval),
// and after PAUSE_AFTER_MS of nothing but failures it is paused, its error kept on it.
export const BACKOFF_AFTER = 3;
const MAX_BACKOFF_MS = 3_600_000;
export const PAUSE_AFTER_MS = 86_400_000;

/** The schedule's health after this beat, from its last job's end or the beat's own failure (undefined: nothing new). */
function healthAfter(row: ScheduleRow, last: JobRow | undefined, problem: string | undefined, now: number): Health | undefined {
  let error: string;
  if (problem !== undefined) error = problem;
  else if (last?.status === 'failed') error = `its last run failed: ${last.error ?? 'no reason given'}`;
  else if (last && last.status === 'completed' && (row.consecutive_failures > 0 || row.last_error !== null))
    return { failures: 0, failingSince: null, error: null, paused: false };
  else return undefined;
  const failingSince = row.failing_since ?? new Date(now);
  const paused = now - failingSince.getTime() >= PAUSE_AFTER_MS;
  return {
    failures: row.consecutive_failures + 1,
    failingSince,
    error: paused ? `paused after failing since ${failingSince.toISOString()}: ${error}` : error,
    paused,
  };
}

/** When a schedule with `failures` in a row runs next: its interval, doubled from the BACKOFF_AFTER-th on. */
function backoffMs(everyMs: number, failures: number): number {
  if (failures < BACKOFF_AFTER) return everyMs;
  return Math.max(everyMs, Math.min(MAX_BACKOFF_MS, everyMs * 2 ** (failures - BACKOFF_AFTER + 1)));
}

/** The run after `now` on the schedule's own clock: beats missed while nothing ran are not made up. */
function nextAfter(row: ScheduleRow, now: number): Date {
  const every = Number(row.every_ms);
  const due = row.next_run_at.getTime();
  return new Date(due > now ? due : due + (Math.floor((now - due) / every) + 1) * every);
}

/**
 * One beat of a schedule. `clock`: 'own' when the schedule's next_run_at said it was due (a
 * beat another process took already is let go), 'bull' when BullMQ's scheduler fired it.
 */
export async function tick(deps: ScheduleDeps, id: string, clock: 'own' | 'bull'): Promise<TickOutcome | null> {
  const seen = await findSchedule(deps.db, id);
  if (!seen || seen.paused || (clock === 'own' && seen.next_run_at.getTime() > Date.now())) return null;
  // Checked before the row is locked: a slow DNS answer must not hold the database.
  let prepared: Omit<NewJob, 'jobId'> | undefined;
  let problem: string | undefined;
  try {
    prepared = await prepareImport({ db: deps.db, settings: deps.settings }, seen.import);
  } catch (err) {
    problem = err instanceof Error ? err.message : String(err);
  }
  let made: JobRow | undefined;
  const outcome = await deps.db.transaction(async (tx): Promise<TickOutcome | null> => {
    const row = await findSchedule(tx, id, true);
    const now = Date.now();
    // A schedule backing off waits for its own next_run_at whatever woke it.
    const ownClock = clock === 'own' || (row?.consecutive_failures ?? 0) >= BACKOFF_AFTER;
    if (!row || row.paused || (ownClock && row.next_run_at.getTime() > now)) return null;
    let next = clock === 'bull' ? new Date(now + Number(row.every_ms)) : nextAfter(row, now);
    const last = row.last_job_id ? await findJob(tx, row.last_job_id) : undefined;
    if (last && (last.status === 'queued' || last.status === 'running')) {
      await updateTicked(tx, id, { skipped: true }, next);
      return { skipped: true };
    }
    if (prepared) {
      // Over the budget the beat waits for room (it is not lost): its run starts when the oldest
      // scheduled job of the last minute leaves the count.
      const until = await budgetFullUntil(tx, deps.maxJobsPerMinute);
      if (until) {
        await updateTicked(tx, id, { deferred: until }, until);
        return { deferred: until };
      }
    }
    // The last run's failure is counted once: when the job that follows it is made.
    const health = healthAfter(row, prepared ? last : undefined, problem, now);
    let result: TickOutcome;
    if (health?.paused) result = { failed: health.error!, paused: true };
    else if (!prepared) result = { failed: problem! };
    else {
      made = await insertJob(tx, { ...prepared, jobId: randomUUID(), scheduleId: id });
      result = { ran: made.job_id };
    }
    if (health && health.failures >= BACKOFF_AFTER) next = new Date(now + backoffMs(Number(row.every_ms), health.failures));
    await updateTicked(tx, id, result, next, health);
    return result;
  });
  if (made) await announce(deps, made, 'scheduled');
  if (outcome && 'failed' in outcome)
    deps.log.warn(
      { schedule: id, error: outcome.failed, paused: outcome.paused === true },
      outcome.paused ? 'a schedule failing for a day was paused' : 'a scheduled import could not start',
    );
  return outcome;
}

/** What wakes schedules. */
export interface Scheduler {
  /** A schedule made, resumed or given a new interval; its first beat at `firstAt` (default: one interval from now). */
  set(id: string, everyMs: number, firstAt?: Date): Promise<void>;
  /** A schedule paused or deleted. */
  unset(id: string): Promise<void>;
  /** Starts waking the schedules. */
  start(deps: ScheduleDeps): { close(): Promise<void> };
  close(): Promise<void>;
}

const POLL_MS = 250;

/** Embedded and PostgreSQL modes: each process looks for schedules due, four times a second. */
export function localScheduler(): Scheduler {
  return {
    set: async () => {},
    unset: async () => {},
    close: async () => {},
    start(deps) {
      let closed = false;
      let timer: NodeJS.Timeout | undefined;
      let running: Promise<void> | undefined;
      const beat = () => {
        running = (async () => {
          for (const id of await listDue(deps.db)) {
            if (closed) return;
            // One schedule's failure (its beat tried again at the next look) holds up no other.
            await tick(deps, id, 'own').catch((err: unknown) => deps.log.warn({ err, schedule: id }, 'schedules: a beat failed'));
          }
        })()
          .catch((err: unknown) => deps.log.warn({ err }, 'schedules: a beat failed'))
          .finally(() => {
            if (!closed) timer = setTimeout(beat, POLL_MS);
          });
      };
      timer = setTimeout(beat, POLL_MS);
      return {
        async close() {
          closed = true;
          clearTimeout(timer);
          await running;
        },
      };
    },
  };
}
