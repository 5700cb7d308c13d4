import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { formatProcessId, isRunning, parseProcessId, thisProcess } from '../core/process-identity.js';

export class DataDirLockedError extends Error {
  constructor(dataDir: string, pid: number) {
    super(
      `DATA_DIR ${dataDir} is in use by another Intake process (pid ${pid}). ` +
        'Embedded mode allows one process per data directory: stop that process, ' +
        'or set DATA_DIR to another directory, or use DATABASE_URL for several processes.',
    );
    this.name = 'DataDirLockedError';
  }
}

/** Lock files this process holds: its own pid in a lock file it does not hold is an earlier process's. */
const held = new Set<string>();

/**
 * PGlite takes no lock of its own, and two processes writing one data directory corrupt it.
 * The lock file holds the owner's pid and start time; a file left by a process that no longer
 * runs (kill -9, a container restarted with the same pid) is taken over.
 */
export function acquireLock(dataDir: string): () => void {
  const lockPath = resolve(join(dataDir, 'intake.lock'));
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockPath, 'wx');
      writeSync(fd, formatProcessId(thisProcess));
      closeSync(fd);
      held.add(lockPath);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        held.delete(lockPath);
        rmSync(lockPath, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let text: string;
      try {
        text = readFileSync(lockPath, 'utf8');
      } catch (readErr) {
        if ((readErr as NodeJS.ErrnoException).code === 'ENOENT') continue; // released meanwhile
        throw readErr;
      }
      const owner = parseProcessId(text);
      const ownPid = owner?.pid === process.pid;
      if (owner && (ownPid ? held.has(lockPath) : isRunning(owner))) throw new DataDirLockedError(dataDir, owner.pid);
      rmSync(lockPath, { force: true }); // stale: its owner is gone
    }
  }
  throw new Error(`could not take the lock ${lockPath}`);
}
