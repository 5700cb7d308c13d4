import { createHash, timingSafeEqual } from 'node:crypto';
import cors from '@fastify/cors';
import type { FastifyInstance } from 'fastify';
import { AppError } from './errors.js';

const digest = (token: string) => createHash('sha256').update(token).digest();

/**
 * Access control and CORS. With tokens, every /api route (the event streams too) needs
 * `Authorization: Bearer <token>`; the console's static files, /docs, /openapi.json and the
 * health and metrics endpoints stay open. Tokens are compared as SHA-256 digests with
 * timingSafeEqual, against every token, so neither a token's length nor which one matched
 * shows in the time taken; a token is never logged or echoed.
 */
export async function registerAccess(app: FastifyInstance, { tokens, corsOrigins }: { tokens: string[]; corsOrigins: string[] }): Promise<void> {
  if (corsOrigins.length > 0) {
    await app.register(cors, {
      origin: corsOrigins,
      methods: ['GET', 'POST', 'DELETE'],
      allowedHeaders: ['Authorization', 'Content-Type', 'Idempotency-Key'],
      exposedHeaders: ['Location', 'Idempotent-Replayed'],
      maxAge: 600,
    });
  }
  if (tokens.length === 0) return;
  const known = tokens.map(digest);

  app.addHook('onRequest', async (request, reply) => {
    if (!request.url.startsWith('/api/') || request.method === 'OPTIONS') return; // a CORS preflight carries no credentials
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
