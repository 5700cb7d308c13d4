import { createHash, timingSafeEqual } from 'node:crypto';
import cors from '@fastify/cors';
import type { FastifyInstance } from 'fastify';
import { AppError } from '../core/errors.js';

const digest = (token: string) => createHash('sha256').update(token).digest();

/** CORS, for the origins allowed to call the API from a browser. */
export async function registerCors(app: FastifyInstance, corsOrigins: string[]): Promise<void> {
  if (corsOrigins.length === 0) return;
  await app.register(cors, {
    origin: corsOrigins,
    methods: ['GET', 'POST', 'PATCH', 'DELETE'],
    allowedHeaders: ['Authorization', 'Content-Type', 'Idempotency-Key'],
    exposedHeaders: ['Location', 'Idempotent-Replayed'],
    maxAge: 600,
  });
}

/**
 * Access control for the routes registered in `scope` (and its children): with tokens, each
 * needs `Authorization: Bearer <token>`. The hook belongs to the routes, so it runs for any
 * request the router sends to them, however its URL was written (percent-encoded, absolute
 * form, HEAD): a route is protected by where it is registered, never by a test on the URL.
 * Tokens are compared as SHA-256 digests with timingSafeEqual, against every token, so neither
 * a token's length nor which one matched shows in the time taken; a token is never logged or
 * echoed.
 */
export function requireToken(scope: FastifyInstance, tokens: string[]): void {
  if (tokens.length === 0) return;
  const known = tokens.map(digest);
  scope.addHook('onRequest', async (request, reply) => {
    const header = request.headers.authorization;
    const presented = header && /^Bearer [\x21-\x7e]+$/i.test(header) ? digest(header.slice(7)) : undefined;
    let match = false;
    for (const token of known) if (presented && timingSafeEqual(token, presented)) match = true;
    if (match) return;
    reply.header('www-authenticate', 'Bearer realm="intake"');
    throw new AppError(
      401,
      'unauthorized',
      header ? 'The access token is not valid' : 'This Intake requires an access token: send Authorization: Bearer <token>',
    );
  });
}
