/**
 * Scale-out: each schedule is a BullMQ job scheduler on its own queue, so one beat fires per
 * interval across every worker process, and it outlives restarts (it is kept in Redis). At
 * each start a worker process sets the schedulers again from the rows (Redis may have lost
 * them) and removes any the rows no longer hold.
 */
import { Queue, Worker } from 'bullmq';
import type { FastifyBaseLogger } from 'fastify';
import { patientRedis } from '../live/redis.js';
import { bullPrefix } from './queue.js';
import { within } from '../core/within.js';
import { tick, type Scheduler } from './schedules.js';
import { findSchedule, listSchedules } from '../storage/schedules.js';

const QUEUE = 'intake-schedules';
const TIMEOUT_MS = 5000;
const SYNC_MS = 60_000;

interface Beat {
  scheduleId: string;
}

export function bullScheduler(url: string, redisKeyPrefix: string, log: FastifyBaseLogger): Scheduler {
  const prefix = bullPrefix(redisKeyPrefix);
  const connection = patientRedis(url);
  connection.on('error', (err) => log.warn({ err: err.message }, 'schedule queue connection error'));
  const queue = new Queue<Beat>(QUEUE, { connection, prefix });
  queue.on('error', (err) => log.warn({ err: err.message }, 'schedule queue error'));

  const upsert = (id: string, everyMs: number, startDate: number) =>
    within(
      queue.upsertJobScheduler(
        id,
        { every: everyMs, startDate },
        {
          name: 'beat',
          data: { scheduleId: id },
          opts: { removeOnComplete: true, removeOnFail: true, attempts: 3, backoff: { type: 'exponential', delay: 5000 } },
        },
      ),
      TIMEOUT_MS,
      'set a schedule',
    );

  return {
    async set(id, everyMs, firstAt) {
      // A changed interval starts again from startDate; the same one keeps the beat already due.
      await upsert(id, everyMs, Math.max(firstAt?.getTime() ?? Date.now() + everyMs, Date.now()));
    },
    async unset(id) {
      await within(queue.removeJobScheduler(id), TIMEOUT_MS, 'remove a schedule');
    },
    start(deps) {
      // At start and every minute (a Redis that restarted empty, a resume that could not reach
      // it); never waited for at close: a Redis that does not answer must not hold the shutdown.
      let syncing = false;
      const sync = () => {
        if (syncing) return;
        syncing = true;
        void within(
          (async () => {
            // Redis first, then the rows: a schedule made or deleted meanwhile is in both or gone
            // from the rows, never taken for one to remove.
            const present = new Map((await queue.getJobSchedulers(0, -1)).map((scheduler) => [scheduler.key, scheduler.every]));
            const rows = await listSchedules(deps.db);
            const wanted = new Map(rows.filter((row) => !row.paused).map((row) => [row.schedule_id, row]));
            for (const id of present.keys()) if (!wanted.has(id)) await queue.removeJobScheduler(id);
            for (const [id, row] of wanted) {
              // Missing, or left at an old interval (an edit that could not reach Redis).
              if (present.get(id) !== Number(row.every_ms))
                await upsert(id, Number(row.every_ms), Math.max(row.next_run_at.getTime(), Date.now()));
            }
          })(),
          30_000,
          'set the schedulers from the rows',
        )
          .catch((err: unknown) => log.warn({ err }, 'schedules: could not set the schedulers from the rows'))
          .finally(() => (syncing = false));
      };
      sync();
      const resync = setInterval(sync, SYNC_MS);
      resync.unref();
      const workerConnection = patientRedis(url);
      workerConnection.on('error', (err) => log.warn({ err: err.message }, 'schedule worker connection error'));
      const worker = new Worker<Beat>(
        QUEUE,
        async (job) => {
          const id = job.data.scheduleId;
          const outcome = await tick(deps, id, 'bull');
          if (outcome && 'deferred' in outcome) {
            // Over the budget: one beat of this schedule waits for room, unless its next regular
            // beat comes first (then that one takes the run).
            const row = await findSchedule(deps.db, id);
            const wait = outcome.deferred.getTime() - Date.now();
            if (row && wait < Number(row.every_ms)) {
              await queue.add(
                'beat',
                { scheduleId: id },
                { jobId: `deferred-${id}`, delay: Math.max(0, wait), removeOnComplete: true, removeOnFail: true },
              );
            }
          }
        },
        { connection: workerConnection, prefix, concurrency: 1 },
      );
      worker.on('error', (err) => log.warn({ err: err.message }, 'schedule worker error'));
      worker.on('failed', (job, err) => log.warn({ schedule: job?.data.scheduleId, err: err.message }, 'a schedule beat failed'));
      return {
        async close() {
          clearInterval(resync);
          await worker.close();
          workerConnection.disconnect();
        },
      };
    },
    async close() {
      await queue.close();
      connection.disconnect();
    },
  };
}
