import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ownerGone, ownerTag } from '../core/process-identity.js';
import type { Input } from '../formats/parse.js';

/**
 * Where uploads are kept between the submit and the job's end, under the job id (never the
 * client's file name): a directory (UPLOAD_DIR), or a bucket (s3.ts) so that API and worker
 * machines share no disk.
 */
export interface UploadStore {
  readonly kind: 'file' | 's3';
  /**
   * Stores `body` as the upload of `jobId`, streamed. If it fails, nothing is kept and the
   * error is the body's own (the client left, a limit) or the store's (503 from s3.ts).
   * Returns the size stored.
   */
  put(jobId: string, body: Readable): Promise<number>;
  /** The upload, to read; undefined if it is gone. */
  input(jobId: string): Promise<Input | undefined>;
  exists(jobId: string): Promise<boolean>;
  /** Removes the upload (and a partial one) if there is one. */
  remove(jobId: string): Promise<void>;
  /**
   * Removes what a process that stopped mid-upload left: at once where its owner is known to be
   * gone, otherwise once untouched for `olderThanMs`; returns how many.
   */
  sweep(olderThanMs: number): Promise<number>;
  /** A directory on this machine for bytes a job must read as a file (a zip from elsewhere). */
  readonly scratchDir: string;
}

/**
 * Uploads as files in `dir`: written as `<id>.<owner>.part` (the owner is this process, see
 * ownerTag), flushed to disk, renamed to `<id>` once complete, and the rename flushed, so an
 * upload answered 202 survives a power failure as its job does.
 */
export function fileStore(dir: string): UploadStore {
  const path = (jobId: string) => join(dir, jobId);
  const partial = (jobId: string) => join(dir, `${jobId}.${ownerTag}.part`);
  return {
    kind: 'file',
    scratchDir: dir,
    async put(jobId, body) {
      await mkdir(dir, { recursive: true });
      const out = createWriteStream(partial(jobId), { flush: true });
      try {
        await pipeline(body, out);
      } catch (err) {
        // The file is opened asynchronously: let the stream finish opening and close before
        // removing it, or its late open would create the file again after the removal.
        if (!out.closed) await new Promise<void>((resolve) => out.once('close', () => resolve()));
        await rm(partial(jobId), { force: true });
        throw err;
      }
      await rename(partial(jobId), path(jobId));
      const folder = await open(dir, 'r');
      try {
        await folder.datasync();
      } finally {
        await folder.close();
      }
      return (await stat(path(jobId))).size;
    },
    async input(jobId) {
      const file = path(jobId);
      if (!existsSync(file)) return undefined;
      return { path: file, open: async () => createReadStream(file, { highWaterMark: 256 * 1024 }), scratchDir: dir };
    },
    async exists(jobId) {
      return existsSync(path(jobId));
    },
    async remove(jobId) {
      await rm(path(jobId), { force: true });
      await rm(partial(jobId), { force: true });
    },
    // A partial upload whose owner process no longer runs on this machine is dead at once (a
    // restart after kill -9); one of another machine sharing the directory (or a spool file)
    // is dead once untouched for longer than an upload in progress may be (it writes at least
    // once per BODY_IDLE_TIMEOUT_MS, or is cut off).
    async sweep(olderThanMs) {
      const before = Date.now() - olderThanMs;
      let removed = 0;
      for (const name of await readdir(dir).catch(() => [])) {
        if (!name.endsWith('.part') && !name.startsWith('spool-')) continue;
        const file = join(dir, name);
        const owner = /^[^.]+\.(.+)\.part$/.exec(name)?.[1];
        const info = await stat(file).catch(() => undefined);
        if (info && ((owner !== undefined && ownerGone(owner)) || info.mtimeMs < before)) {
          await rm(file, { force: true });
          removed++;
        }
      }
      return removed;
    },
  };
}
