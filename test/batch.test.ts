import { describe, expect, it } from 'vitest';
import { batchReads } from '../src/core/batch.js';

/** A load that records each batch and answers when release() is called. */
function recorder() {
  const batches: string[][] = [];
  const pending: Array<() => void> = [];
  const load = (keys: string[]) =>
    new Promise<Map<string, string>>((resolve, reject) => {
      batches.push(keys);
      pending.push(() =>
        keys.includes('boom')
          ? reject(new Error('database unavailable'))
          : resolve(new Map(keys.filter((k) => k !== 'none').map((k) => [k, `value of ${k}`]))),
      );
    });
  const release = async () => {
    pending.shift()!();
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { batches, load, release };
}

describe('batchReads', () => {
  it('sends a read at once while a connection is free, and batches those that arrive while none is', async () => {
    const { batches, load, release } = recorder();
    const read = batchReads(2, 100, load);
    const a = read('a');
    const b = read('b');
    expect(batches).toEqual([['a'], ['b']]); // two connections: both at once
    const waiting = [read('c'), read('d'), read('c'), read('none')];
    expect(batches.length).toBe(2); // nothing more until a batch ends
    await release();
    expect(await a).toBe('value of a');
    expect(batches).toEqual([['a'], ['b'], ['c', 'd', 'none']]); // each key once
    const e = read('e'); // arrives after that batch was sent: it waits for the next one
    expect(batches.length).toBe(3);
    await release();
    await release();
    expect(await b).toBe('value of b');
    expect(await Promise.all(waiting)).toEqual(['value of c', 'value of d', 'value of c', undefined]);
    expect(batches.at(-1)).toEqual(['e']);
    await release();
    expect(await e).toBe('value of e');
  });

  it('sends a key again only when its answer is back: the reads meanwhile share the next query', async () => {
    const { batches, load, release } = recorder();
    const read = batchReads(3, 100, load);
    const first = read('page');
    const meanwhile = [read('page'), read('page'), read('page')];
    const other = read('other'); // a free connection and another key: goes at once
    expect(batches).toEqual([['page'], ['other']]);
    await release();
    expect(await first).toBe('value of page');
    expect(batches).toEqual([['page'], ['other'], ['page']]);
    await release();
    await release();
    expect(await other).toBe('value of other');
    expect(await Promise.all(meanwhile)).toEqual(['value of page', 'value of page', 'value of page']);
    expect(batches.length).toBe(3);
  });

  it('fails every read of a batch whose load fails for a shared reason (the database is down), and goes on with the next', async () => {
    const { batches, load, release } = recorder();
    const read = batchReads(1, 100, load, () => true);
    const first = read('a');
    const failing = [read('boom'), read('x')];
    const settled = Promise.allSettled(failing);
    await release();
    await release();
    expect((await settled).map((result) => result.status)).toEqual(['rejected', 'rejected']);
    expect(await first).toBe('value of a');
    const after = read('y');
    await release();
    expect(await after).toBe('value of y');
    expect(batches).toEqual([['a'], ['boom', 'x'], ['y']]);
  });

  it('loads each key of a failed batch alone, so one bad key fails only its own reads', async () => {
    const { batches, load, release } = recorder();
    const read = batchReads(1, 100, load);
    const first = read('a');
    const reads = [read('x'), read('boom'), read('boom'), read('y')];
    const settled = Promise.allSettled(reads);
    for (let i = 0; i < 5; i++) await release();
    expect(await first).toBe('value of a');
    expect((await settled).map((result) => result.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled']);
    expect(await reads[0]).toBe('value of x');
    expect(batches).toEqual([['a'], ['x', 'boom', 'y'], ['x'], ['boom'], ['y']]);
  });

  it('sends at most maxKeys keys in one batch', async () => {
    const { batches, load, release } = recorder();
    const read = batchReads(1, 3, load);
    const reads = ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((key) => read(key));
    for (let i = 0; i < 3; i++) await release();
    expect(batches).toEqual([['a'], ['b', 'c', 'd'], ['e', 'f', 'g']]);
    expect(await Promise.all(reads)).toEqual(['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((k) => `value of ${k}`));
  });
});
