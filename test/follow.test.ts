import { describe, expect, it } from 'vitest';
import { follow, type FollowState } from '../src/client/follow.js';
import type { JobPayload } from '../src/core/job.js';

const job = (version: number, status: JobPayload['status'] = 'running') => ({ job_id: 'j', status, version }) as JobPayload;

/** An event stream body sending these payloads, then ending (or breaking, if `error` is given). */
function stream(jobs: JobPayload[], error?: Error): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const j of jobs) controller.enqueue(new TextEncoder().encode(`event: status\nid: ${j.version}\ndata: ${JSON.stringify(j)}\n\n`));
      if (error) controller.error(error);
      else controller.close();
    },
  });
}

describe('follow (the event stream, polling while it is down)', () => {
  it('takes the stream to the terminal state, each version once and in order', async () => {
    const seen: number[] = [];
    const states: FollowState[] = [];
    const last = await follow({
      openStream: async () =>
        stream([job(1, 'queued'), job(2), job(2), job(1, 'queued'), job(3), job(4, 'completed'), job(5, 'completed')]),
      read: async () => {
        throw new Error('no poll expected');
      },
      isFatal: () => true,
      onJob: (j) => seen.push(j.version),
      onState: (s) => states.push(s),
      pollMs: 10,
      reopenMs: 50,
    });
    expect(seen).toEqual([1, 2, 3, 4]);
    expect(last.version).toBe(4);
    expect(states).toEqual(['connecting', 'live', 'done']);
  });

  it('polls while the stream is down, tries it again, and tells what went wrong where', async () => {
    let opens = 0;
    let polls = 0;
    const errors: string[] = [];
    const states: FollowState[] = [];
    const last = await follow({
      async openStream() {
        opens++;
        if (opens === 1) return stream([job(1)], new Error('connection reset'));
        if (opens === 2) throw new Error('refused');
        return stream([job(6), job(7, 'failed')]);
      },
      async read() {
        polls++;
        if (polls === 2) throw new Error('poll failed');
        return job(Math.min(1 + polls, 5));
      },
      isFatal: () => false,
      onJob: () => {},
      onState: (s) => states.push(s),
      onError: (err, during) => errors.push(`${during}: ${(err as Error).message}`),
      pollMs: 5,
      reopenMs: 20,
    });
    expect(last).toMatchObject({ version: 7, status: 'failed' });
    expect(opens).toBe(3);
    expect(polls).toBeGreaterThan(2);
    expect(errors.slice(0, 3)).toEqual(['stream: connection reset', 'poll: poll failed', 'stream: refused']);
    expect(states[0]).toBe('connecting');
    expect(states.at(-1)).toBe('done');
    expect(states).toContain('polling');
  });

  it('never tells a polled payload older than one the stream told, nor the other way round', async () => {
    const seen: string[] = [];
    let opens = 0;
    const polled = [job(2), job(4), job(3, 'completed'), job(6), job(5)];
    const last = await follow({
      async openStream() {
        opens++;
        // The stream tells 3, then drops; later it opens again with what it held then (older).
        if (opens > 1) return stream([job(5), job(7, 'completed')]);
        let pulls = 0;
        return new ReadableStream({
          pull(controller) {
            if (pulls++ === 0) controller.enqueue(new TextEncoder().encode(`event: status\ndata: ${JSON.stringify(job(3))}\n\n`));
            else controller.error(new Error('dropped'));
          },
        });
      },
      read: async () => polled.shift() ?? job(6),
      isFatal: () => false,
      onJob: (j) => seen.push(`${j.version} ${j.status}`),
      pollMs: 1,
      reopenMs: 20,
    });
    expect(seen).toEqual(['3 running', '4 running', '6 running', '7 completed']);
    expect(last).toMatchObject({ version: 7, status: 'completed' });
  });

  it('stops at a fatal error, and when its signal aborts', async () => {
    const gone = new Error('HTTP 404');
    await expect(
      follow({
        openStream: async () => stream([], new Error('broken')),
        read: async () => {
          throw gone;
        },
        isFatal: (err) => err === gone,
        onJob: () => {},
        pollMs: 5,
        reopenMs: 20,
      }),
    ).rejects.toBe(gone);

    const controller = new AbortController();
    const following = follow({
      openStream: async () => stream([job(1)]),
      read: async () => job(1),
      isFatal: () => false,
      onJob: () => {},
      pollMs: 5,
      reopenMs: 20,
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(new Error('stopped')), 30);
    await expect(following).rejects.toThrow('stopped');
  });
});
