/**
 * Reads that arrive while the database (or Redis) is busy wait here, rather than in the pool's
 * queue, and go to it together: up to `limit` batches at once, each of up to `maxKeys` keys,
 * and each key in one batch at a time. Many requests for one page, or for many ids, then cost
 * one query (one round trip). Under light load each read goes alone and at once: nothing
 * waits for a timer. A read only joins a batch that has not been sent yet, so its answer is
 * never older than the request: read-your-writes holds as it does without batching.
 *
 * `load` gets each key once, however many reads asked for it, and answers with what it found;
 * a key it leaves out reads as undefined. When it throws for a batch of several keys, each key
 * is loaded again alone, one after another, so that one bad key fails only its own reads;
 * unless `shared(err)` says the error is not the keys' fault (the database is down), when
 * every read of the batch throws it at once.
 */
export function batchReads<K, V>(
  limit: number,
  maxKeys: number,
  load: (keys: K[]) => Promise<Map<K, V>>,
  shared: (err: unknown) => boolean = () => false,
): (key: K) => Promise<V | undefined> {
  interface Waiter {
    resolve(value: V | undefined): void;
    reject(err: unknown): void;
  }
  const waiting = new Map<K, Waiter[]>();
  const sent = new Set<K>(); // keys of the batches sent and not yet answered
  let running = 0;

  function flush(): void {
    while (running < limit) {
      const batch = new Map<K, Waiter[]>();
      for (const [key, waiters] of waiting) {
        if (batch.size === maxKeys) break;
        if (sent.has(key)) continue; // goes when its answer is back: that answer may be older than these reads
        batch.set(key, waiters);
        waiting.delete(key);
        sent.add(key);
      }
      if (batch.size === 0) return;
      send(batch);
    }
  }

  function answer(batch: Map<K, Waiter[]>): Promise<void> {
    return load([...batch.keys()]).then(
      (found) => {
        for (const [key, waiters] of batch) for (const waiter of waiters) waiter.resolve(found.get(key));
      },
      async (err: unknown) => {
        if (batch.size === 1 || shared(err)) {
          for (const waiters of batch.values()) for (const waiter of waiters) waiter.reject(err);
          return;
        }
        for (const [key, waiters] of batch) await answer(new Map([[key, waiters]]));
      },
    );
  }

  function send(batch: Map<K, Waiter[]>): void {
    running++;
    void answer(batch).finally(() => {
      running--;
      for (const key of batch.keys()) sent.delete(key);
      flush();
    });
  }

  return (key) =>
    new Promise<V | undefined>((resolve, reject) => {
      const waiters = waiting.get(key);
      if (waiters) waiters.push({ resolve, reject });
      else waiting.set(key, [{ resolve, reject }]);
      flush();
    });
}
