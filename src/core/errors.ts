/**
 * A permanent failure of the input itself (malformed file, bad record): retrying cannot
 * help, so the job fails at once with this message, which says what and where.
 */
export class IngestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IngestError';
  }
}

export interface ValidationIssue {
  loc: (string | number)[];
  msg: string;
  type: string;
}

/** An error the client can act on: its status, a stable code and a message (or issues). */
export class AppError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    readonly detail: string | ValidationIssue[],
  ) {
    super(typeof detail === 'string' ? detail : detail.map((issue) => issue.msg).join('; '));
    this.name = 'AppError';
  }
}

export const validationError = (issues: ValidationIssue[]) => new AppError(422, 'validation_error', issues);
export const jobNotFound = () => new AppError(404, 'job_not_found', 'Job not found');
