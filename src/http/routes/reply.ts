import type { FastifyReply } from 'fastify';
import { jobNotFound } from '../../core/errors.js';
import { isUuid } from '../../core/ids.js';
import { toPayload, type JobRow } from '../../storage/jobs.js';

/** The job id of a request, lower-cased; a malformed one names no job (404, never a 500). */
export function jobIdOf(params: { job_id: string }): string {
  if (!isUuid(params.job_id)) throw jobNotFound();
  return params.job_id.toLowerCase();
}

/**
 * The job as a submit (or a retry) answers it: with its status URL, and Location. The status
 * URL is built on PUBLIC_URL, or relative: never from the request's Host header, which the
 * client chooses.
 */
export function sendJob(reply: FastifyReply, code: 200 | 202, row: JobRow, publicUrl: string | undefined) {
  const statusPath = `/api/job/${row.job_id}`;
  return reply
    .code(code)
    .header('location', statusPath)
    .send({ ...toPayload(row), status_url: `${publicUrl ?? ''}${statusPath}` });
}
