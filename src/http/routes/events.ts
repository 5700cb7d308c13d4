import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts';
import type { FastifyReply } from 'fastify';
import { AppError, jobNotFound } from '../../core/errors.js';
import type { JobEvents } from '../../live/job-events.js';
import { errorRef, jobIdParamsSchema } from '../schemas.js';
import { TERMINAL_STATUSES, type JobPayload } from '../../core/job.js';
import type { Db } from '../../storage/db.js';
import { findJob, findPayloads, toPayload } from '../../storage/jobs.js';
import { jobIdOf } from './reply.js';

const PROGRESS_INTERVAL_MS = 250; // at most four progress events a second
const RECHECK_MS = 2000; // pub/sub is best effort: re-read the rows now and then
const HEARTBEAT_MS = 15_000;
// Output a stream may hold unsent before its client is dropped. The kernel's socket buffers
// (hundreds of KiB to a few MiB) already absorb a reader that is a moment behind; what piles
// up in the process beyond them is a reader that stopped, and would stay in memory for as
// long as it holds the connection. An event is at most a few KiB, so this is a hundred or
// more events behind, while progress (the bulk of the events) waits for a slow client
// instead (see /api/jobs/events). At the default MAX_EVENT_STREAMS (1000), 256 MiB at worst.
const MAX_UNSENT_BYTES = 256 * 1024;
// Slots come back as streams end, which nothing predicts; meanwhile the status URL answers.
const RETRY_AFTER_SECONDS = 5;

type Follower = (job: JobPayload) => void;
interface Followed {
  followers: Set<Follower>;
  unsubscribe(): void;
}

/**
 * Follows jobs for their event streams, once per job however many streams it has: one
 * subscription to its events (one parse per message), and one statement every RECHECK_MS that
 * re-reads every followed job (pub/sub is best effort), offering each row to its streams. No
 * timer runs while no job is followed.
 */
function createJobWatcher(db: Db, events: JobEvents): { follow(jobId: string, follower: Follower): () => void } {
  const followed = new Map<string, Followed>();
  let timer: NodeJS.Timeout | undefined;
  let reading = false; // a slow read is not overlapped by the next one

  function deliver(jobId: string, job: JobPayload): void {
    for (const follower of followed.get(jobId)?.followers ?? []) follower(job);
  }

  function schedule(): void {
    if (timer || reading || followed.size === 0) return;
    timer = setTimeout(() => void recheck(), RECHECK_MS);
  }

  async function recheck(): Promise<void> {
    timer = undefined;
    reading = true;
    try {
      const found = await findPayloads(db, [...followed.keys()]);
      for (const [jobId, { payload }] of found) deliver(jobId, JSON.parse(payload) as JobPayload);
    } catch {
      // the next recheck or event will do
    } finally {
      reading = false;
      schedule();
    }
  }

  function start(jobId: string): Followed {
    const entry = {
      followers: new Set<Follower>(),
      unsubscribe: events.subscribe(jobId, (message) => deliver(jobId, JSON.parse(message) as JobPayload)),
    };
    followed.set(jobId, entry);
    return entry;
  }

  return {
    follow(jobId, follower) {
      const entry = followed.get(jobId) ?? start(jobId);
      entry.followers.add(follower);
      schedule();
      return () => {
        entry.followers.delete(follower);
        if (entry.followers.size > 0) return;
        entry.unsubscribe();
        followed.delete(jobId);
        if (followed.size === 0) {
          clearTimeout(timer);
          timer = undefined;
        }
      };
    },
  };
}

/**
 * GET /api/job/{id}/events: Server-Sent Events. The first event is the job as it is now;
 * then one `status` event per transition and `progress` events (the latest only, at most
 * four a second); the stream ends after the terminal state. Each event's data is the job
 * payload, its id the job's version.
 *
 * Both routes together hold at most `maxStreams` streams open (each holds a connection,
 * buffers and listeners); one more is refused with 429 before anything is opened.
 */
export const eventRoutes: FastifyPluginAsyncJsonSchemaToTs<{ Options: { db: Db; events: JobEvents; maxStreams: number } }> = async (
  app,
  { db, events, maxStreams },
) => {
  const watcher = createJobWatcher(db, events);
  let slotsTaken = 0; // streams open, or being opened
  // Open streams never end by themselves while their job waits; closing the server ends them.
  const open = new Set<() => void>();
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
    for (const close of [...open]) close();
  });

  /** Takes a stream's slot, or refuses the request; returns the release (which runs once). */
  function takeSlot(reply: FastifyReply): () => void {
    if (slotsTaken >= maxStreams) {
      reply.header('retry-after', String(RETRY_AFTER_SECONDS));
      throw new AppError(
        429,
        'too_many_streams',
        `This server already serves ${maxStreams} event streams; try again later, or poll the status URL`,
      );
    }
    slotsTaken++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      slotsTaken--;
    };
  }

  /**
   * Turns the reply into an event stream with a heartbeat. `close` ends it (once), calling
   * `cleanup` and giving its slot back (`release`); it runs when the client goes away, when
   * the client falls too far behind, and when the server closes too.
   */
  function eventStream(
    reply: FastifyReply,
    release: () => void,
    cleanup: () => void,
  ): { write(text: string): void; unsent(): number; close(): void } {
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    // A pipelined request's answer waits behind the one before it and is not given the socket
    // until then: its own 'close' never comes if the client leaves first. The socket's does.
    const socket = reply.request.raw.socket;
    let heartbeat: NodeJS.Timeout | undefined;
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      open.delete(close);
      clearInterval(heartbeat);
      socket.off('close', close);
      try {
        cleanup();
      } finally {
        release();
      }
      // Ending would queue the end behind everything unsent: a client that stopped reading
      // would keep it all in memory. Cut it instead (its socket's buffers go with it).
      if (raw.writableLength > MAX_UNSENT_BYTES) raw.destroy();
      else raw.end();
    };
    const write = (text: string) => {
      if (closed) return;
      raw.write(text);
      if (raw.writableLength > MAX_UNSENT_BYTES) close();
    };
    heartbeat = setInterval(() => write(': keep-alive\n\n'), HEARTBEAT_MS);
    raw.on('close', close);
    socket.once('close', close);
    open.add(close);
    if (raw.destroyed || socket.destroyed) close(); // the client left while the stream was being opened: no 'close' is to come
    return { write, unsent: () => raw.writableLength, close };
  }

  app.get(
    '/api/job/:job_id/events',
    {
      // A HEAD of a stream would open one that sends nothing and never ends: not offered.
      exposeHeadRoute: false,
      schema: {
        summary: 'Live job changes as Server-Sent Events, ending after the terminal state',
        tags: ['jobs'],
        params: jobIdParamsSchema,
        produces: ['text/event-stream'],
        response: {
          200: { description: 'text/event-stream of `status` and `progress` events; data is the job payload', type: 'string' },
          404: errorRef,
          429: errorRef,
          503: errorRef,
        },
      },
    },
    async (request, reply) => {
      const jobId = jobIdOf(request.params);
      const release = takeSlot(reply);

      let lastVersion = 0;
      let lastStatus = '';
      let pending: JobPayload | undefined; // a progress event held back by the rate limit
      let lastProgressAt = 0;
      let flushTimer: NodeJS.Timeout | undefined;
      let closed = false;
      const queue: JobPayload[] = []; // changes heard before the first event was written

      // Follow before reading the row, so no change between the two is missed.
      let started = false;
      const unfollow = watcher.follow(jobId, (job) => {
        if (started) offer(job);
        else queue.push(job);
      });
      let row;
      try {
        row = await findJob(db, jobId);
        if (!row) throw jobNotFound();
      } catch (err) {
        unfollow();
        release();
        throw err;
      }

      const stream = eventStream(reply, release, () => {
        closed = true;
        unfollow();
        clearTimeout(flushTimer);
      });

      function write(job: JobPayload, event: 'status' | 'progress'): void {
        clearTimeout(flushTimer); // whatever it would have sent is this or older
        flushTimer = undefined;
        lastVersion = job.version;
        lastStatus = job.status;
        pending = undefined;
        if (event === 'progress') lastProgressAt = Date.now();
        stream.write(`event: ${event}\nid: ${job.version}\ndata: ${JSON.stringify(job)}\n\n`);
        if (TERMINAL_STATUSES.has(job.status)) stream.close();
      }

      function offer(job: JobPayload): void {
        if (closed || job.version <= lastVersion || (pending && job.version <= pending.version)) return;
        if (job.status !== lastStatus) {
          clearTimeout(flushTimer);
          flushTimer = undefined;
          write(job, 'status');
          return;
        }
        pending = job;
        const wait = lastProgressAt + PROGRESS_INTERVAL_MS - Date.now();
        if (wait <= 0) write(job, 'progress');
        else if (!flushTimer) {
          flushTimer = setTimeout(() => {
            flushTimer = undefined;
            if (pending && !closed) write(pending, 'progress');
          }, wait);
        }
      }

      write(toPayload(row), 'status');
      // The server began closing while the row was read: preClose has not seen this stream.
      if (closing) stream.close();
      started = true;
      for (const job of queue.splice(0)) offer(job);
    },
  );

  app.get(
    '/api/jobs/events',
    {
      // A HEAD of a stream would open one that sends nothing and never ends: not offered.
      exposeHeadRoute: false,
      schema: {
        summary: 'Live changes of every job (new jobs, transitions, progress) as Server-Sent Events',
        description:
          'A `status` event for each new job and each transition, and `progress` events (per job the latest only, at most four a second); data is the job payload. The stream does not end by itself.',
        tags: ['jobs'],
        produces: ['text/event-stream'],
        response: {
          200: { description: 'text/event-stream of `status` and `progress` events', type: 'string' },
          429: errorRef,
        },
      },
    },
    async (_request, reply) => {
      const release = takeSlot(reply);
      const statuses = new Map<string, string>(); // last status sent, for unfinished jobs
      const pending = new Map<string, string>(); // latest progress payload held back, by job
      // One flush writes the progress of every job that moved since the last: with many jobs
      // running, more than a client takes at once. What it has not taken yet holds the rest
      // back (each job's latest stays pending, for the next flush), so a burst slows a client
      // down instead of dropping it, and only a client that stopped reading reaches the bound.
      // Everything the stream's end undoes is set up before it opens: it may end at once.
      let stream: ReturnType<typeof eventStream> | undefined;
      const flush = setInterval(() => {
        if (!stream) return;
        for (const [jobId, payload] of pending) {
          if (stream.unsent() >= MAX_UNSENT_BYTES / 2) return;
          stream.write(`event: progress\ndata: ${payload}\n\n`);
          pending.delete(jobId);
        }
      }, PROGRESS_INTERVAL_MS);
      const unsubscribe = events.subscribeAll((payload) => {
        const { job_id: jobId, status } = JSON.parse(payload) as JobPayload;
        if (statuses.get(jobId) === status) {
          pending.set(jobId, payload);
          return;
        }
        pending.delete(jobId); // older than this
        if (TERMINAL_STATUSES.has(status)) statuses.delete(jobId);
        else statuses.set(jobId, status);
        stream?.write(`event: status\ndata: ${payload}\n\n`);
      });
      stream = eventStream(reply, release, () => {
        unsubscribe();
        clearInterval(flush);
      });
      stream.write(': connected\n\n');
    },
  );
};
