import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** Uploads are stored under the job id, never under the client's file name. */
export function uploadPath(uploadDir: string, jobId: string): string {
  return join(uploadDir, jobId);
}

/** Where an upload is written while it streams in; renamed to uploadPath once complete. */
export function partialUploadPath(uploadDir: string, jobId: string): string {
  return join(uploadDir, `${jobId}.part`);
}

/**
 * Removes the partial uploads nobody has written to for `olderThanMs`: left by a process that
 * died mid-upload (one in progress writes at least once per BODY_IDLE_TIMEOUT_MS, or is cut
 * off). Returns how many were removed.
 */
export async function sweepPartialUploads(uploadDir: string, olderThanMs: number): Promise<number> {
  const before = Date.now() - olderThanMs;
  let removed = 0;
  for (const name of await readdir(uploadDir).catch(() => [])) {
    if (!name.endsWith('.part')) continue;
    const path = join(uploadDir, name);
    const info = await stat(path).catch(() => undefined);
    if (info && info.mtimeMs < before) {
      await rm(path, { force: true });
      removed++;
    }
  }
  return removed;
}
