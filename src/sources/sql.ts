import type { Db } from '../storage/db.js';
import { SqlProblem, streamQuery } from '../storage/sql-query.js';
import { IngestError } from '../core/errors.js';
import type { ImportSettings } from './imports.js';
import type { Source } from './source.js';

// How long the query's read may sit between fetches (the job's batches commit in between).
const IDLE_MS = 10 * 60_000;

/**
 * A derived dataset's source: the guarded query run again (storage/sql-query.ts), its rows as
 * NDJSON, each object's fields in the query's order with the types its columns are declared
 * as. A run that stopped starts over: the datasets it reads may have changed since.
 */
export function sqlSource(db: Db, settings: ImportSettings, query: string): Source {
  return {
    scratchDir: settings.scratchDir,
    startsOver: "the query's result may have changed since the last run: running it again from the start",
    async open(signal) {
      const rows = streamQuery(db, settings.sql, query, 'load', { idleMs: IDLE_MS, signal });
      return (async function* () {
        try {
          for await (const batch of rows) {
            signal?.throwIfAborted();
            if ('rows' in batch) yield Buffer.from(batch.rows.map(([json]) => `${json}\n`).join(''));
          }
        } catch (err) {
          signal?.throwIfAborted();
          if (err instanceof SqlProblem) throw new IngestError(`the query cannot run: ${err.message}`);
          throw err;
        }
      })();
    },
  };
}
