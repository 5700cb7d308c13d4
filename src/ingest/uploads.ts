import { join } from 'node:path';

/** Uploads are stored under the job id, never under the client's file name. */
export function uploadPath(uploadDir: string, jobId: string): string {
  return join(uploadDir, jobId);
}

/** Where an upload is written while it streams in; renamed to uploadPath once complete. */
export function partialUploadPath(uploadDir: string, jobId: string): string {
  return join(uploadDir, `${jobId}.part`);
}
