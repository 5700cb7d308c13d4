import { EventEmitter } from 'node:events';
import type { FastifyBaseLogger } from 'fastify';
import type { Redis } from 'ioredis';

/**
 * Live job changes, as payload JSON (the bytes GET /api/job/{id} answers). In embedded mode
 * an in-process emitter; in scale-out mode Redis pub/sub, so an API process hears changes
 * committed by workers elsewhere. Delivery is best effort: a listener that must not miss the
 * end (the event stream) also re-reads the database now and then.
 */
export interface JobEvents {
  publish(jobId: string, payload: string): Promise<void>;
  /** Calls listener with each payload published for jobId; returns the unsubscribe. */
  subscribe(jobId: string, listener: (payload: string) => void): () => void;
  /** Calls listener with every payload published, for any job (the console's job list). */
  subscribeAll(listener: (payload: string) => void): () => void;
  close(): Promise<void>;
}

const ALL = Symbol('all jobs');

export function createLocalEvents(): JobEvents {
  const emitter = new EventEmitter();
  emitter.setMaxListeners(0); // one per open event stream
  return {
    async publish(jobId, payload) {
      emitter.emit(jobId, payload);
      emitter.emit(ALL, payload);
    },
    subscribe(jobId, listener) {
      emitter.on(jobId, listener);
      return () => emitter.off(jobId, listener);
    },
    subscribeAll(listener) {
      emitter.on(ALL, listener);
      return () => emitter.off(ALL, listener);
    },
    async close() {
      emitter.removeAllListeners();
    },
  };
}

/**
 * One channel for all jobs; each process fans messages out to its own listeners. The
 * subscriber connection is opened on first use, so worker processes (which only publish)
 * hold none.
 */
export function createRedisEvents(options: {
  publisher: Redis;
  subscriber: () => Redis;
  prefix: string;
  log: FastifyBaseLogger;
}): JobEvents {
  const channel = `${options.prefix}ingest_job_events`;
  const local = createLocalEvents();
  let subscriber: Redis | undefined;

  function listen(): void {
    if (subscriber) return;
    subscriber = options.subscriber();
    subscriber.on('error', (err) => options.log.warn({ err: err.message }, 'event subscriber connection error'));
    subscriber.on('message', (_channel: string, message: string) => {
      // "job_id" is the payload's first field: no need to parse the rest to route it.
      const jobId = message.slice(11, 47);
      void local.publish(jobId, message);
    });
    subscriber.subscribe(channel).catch((err: unknown) => options.log.warn({ err }, 'could not subscribe to job events'));
  }

  return {
    async publish(_jobId, payload) {
      try {
        await options.publisher.publish(channel, payload);
      } catch (err) {
        options.log.debug({ err: (err as Error).message }, 'could not publish a job event');
      }
    },
    subscribe(jobId, listener) {
      listen();
      return local.subscribe(jobId, listener);
    },
    subscribeAll(listener) {
      listen();
      return local.subscribeAll(listener);
    },
    async close() {
      await local.close();
      subscriber?.disconnect();
    },
  };
}
