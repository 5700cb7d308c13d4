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
