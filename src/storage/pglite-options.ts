import type { PGliteOptions } from '@electric-sql/pglite';

/** How the embedded PostgreSQL is started: its memory settings (see bench:memory). */
export function pgliteOptions(): PGliteOptions {
  return {};
}
