import { PGlite, type PGliteOptions } from '@electric-sql/pglite';

/**
 * PostgreSQL's buffer cache inside PGlite. PGlite's PostgreSQL lives in one WebAssembly memory
 * that never shrinks, and its shared memory is zeroed when it is mapped, so all of
 * shared_buffers is resident from the start: PGlite's 128 MB (initdb's default) held about
 * 150 MB of the idle process. With 16 MB the buffer pool fits in the 128 MB the module starts
 * with (it did not grow while 1,000,000 rows were loaded), and that load was not slower.
 */
const SHARED_BUFFERS = '16MB';

/** How the embedded PostgreSQL is started: its memory settings (see bench:memory). */
export function pgliteOptions(): PGliteOptions {
  return {
    // On every start, so data directories made before (postgresql.conf says 128MB) follow too.
    startParams: [...PGlite.defaultStartParams, '-c', `shared_buffers=${SHARED_BUFFERS}`],
    // initdb otherwise probes shared_buffers from 128 MB down in a second PostgreSQL instance,
    // which grew that instance's memory to about 190 MB during a first start.
    initDbStartParams: ['-c', `shared_buffers=${SHARED_BUFFERS}`],
  };
}
