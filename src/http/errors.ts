import type { FastifyError, FastifyInstance } from 'fastify';
import { AppError, type ValidationIssue } from '../core/errors.js';
import { API_LOCK_TIMEOUT_MS, DatabaseUnavailableError, isLockTimeout } from '../storage/db.js';

const LOCATIONS: Record<string, string> = { querystring: 'query', params: 'path', body: 'body', headers: 'header' };

/** Fastify/Ajv validation errors in the shape FastAPI answers with: [{loc, msg, type}]. */
function validationIssues(error: FastifyError): ValidationIssue[] {
  const where = LOCATIONS[error.validationContext ?? 'body'] ?? 'body';
  return (error.validation ?? []).map((issue) => {
    const path = issue.instancePath.split('/').filter(Boolean);
    const missing = (issue.params as { missingProperty?: string }).missingProperty;
    const extra = (issue.params as { additionalProperty?: string }).additionalProperty;
    if (missing) path.push(missing);
    if (extra) path.push(extra);
    const allowed = (issue.params as { allowedValues?: unknown[] }).allowedValues;
    const name = path.at(-1) ?? where;
    const msg = extra
      ? `unknown parameter "${extra}"`
      : allowed
        ? `${name} must be one of: ${allowed.join(', ')}`
        : `${name} ${issue.message ?? 'is invalid'}`;
    return { loc: [where, ...path.map((p) => (/^\d+$/.test(p) ? Number(p) : p))], msg, type: issue.keyword };
  });
}

/** The one error shape, everywhere: {detail, code}; an opaque 500 for anything unexpected. */
export function registerErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof AppError) {
      return reply.code(error.statusCode).send({ detail: error.detail, code: error.code });
    }
    if (error.validation) {
      return reply.code(422).send({ detail: validationIssues(error), code: 'validation_error' });
    }
    if (error instanceof DatabaseUnavailableError) {
      request.log.error({ err: error.cause }, 'database unavailable');
      return reply.code(503).send({ detail: 'The database is unavailable; try again shortly', code: 'database_unavailable' });
    }
    if (isLockTimeout(error)) {
      // A write waited API_LOCK_TIMEOUT_MS for a row or table that a worker (or a publish) holds.
      request.log.warn({ err: error }, 'a write gave up waiting for a lock');
      return reply
        .code(503)
        .header('retry-after', String(Math.ceil(API_LOCK_TIMEOUT_MS / 1000)))
        .send({ detail: 'What this request changes is locked by a job at work (a batch or a publish); try again shortly', code: 'locked' });
    }
    switch (error.code) {
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
      case 'FST_REQ_FILE_TOO_LARGE':
        return reply.code(413).send({ detail: 'The request body is too large', code: 'payload_too_large' });
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
        return reply
          .code(415)
          .send({ detail: `Unsupported Content-Type: ${request.headers['content-type'] ?? 'none'}`, code: 'unsupported_media_type' });
      case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      case 'FST_ERR_CTP_INVALID_JSON_BODY':
        return reply.code(422).send({
          detail: [{ loc: ['body'], msg: `the body is not valid JSON: ${error.message}`, type: 'json_invalid' }],
          code: 'validation_error',
        });
    }
    if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
      // Other client errors raised by Fastify or a plugin (malformed multipart, bad headers...).
      return reply.code(error.statusCode).send({ detail: error.message, code: (error.code ?? 'bad_request').toLowerCase() });
    }
    request.log.error({ err: error }, 'unhandled error');
    return reply.code(500).send({ detail: 'Internal server error', code: 'internal_error' });
  });

  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ detail: `Not found: ${request.method} ${request.url.split('?')[0]}`, code: 'not_found' }),
  );
}
