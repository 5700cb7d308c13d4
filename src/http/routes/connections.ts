import type { FastifyPluginAsyncJsonSchemaToTs } from '@fastify/type-provider-json-schema-to-ts';
import { randomUUID } from 'node:crypto';
import type { Config } from '../../config.js';
import { AppError, validationError } from '../../core/errors.js';
import { isUuid } from '../../core/ids.js';
import { IngestError } from '../../core/errors.js';
import { AddressRefused, checkImportHost, isPublicAddress } from '../../net/fetch.js';
import { checkJiraAccount } from '../../sources/jira-client.js';
import { seal } from '../../core/secrets.js';
import { deleteConnection, findConnection, insertConnection, listConnections, type ConnectionRow } from '../../storage/connections.js';
import { apiTransaction, type Db } from '../../storage/db.js';
import { errorRef } from '../schemas.js';

const connectionSchema = {
  type: 'object',
  required: ['id', 'type', 'name', 'base_url', 'email', 'created_at'],
  properties: {
    id: { type: 'string', format: 'uuid' },
    type: { type: 'string', enum: ['jira'] },
    name: { type: 'string' },
    base_url: { type: 'string' },
    email: { type: 'string' },
    created_at: { type: 'string', format: 'date-time' },
  },
} as const;

const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', maxLength: 100 } } } as const;

const shown = (row: ConnectionRow) => ({
  id: row.id,
  type: row.type,
  name: row.name,
  base_url: row.base_url,
  email: row.email,
  created_at: row.created_at.toISOString(),
});
const notFound = () => new AppError(404, 'connection_not_found', 'No connection with this id');

/** A Jira site's address: http(s), no query or fragment, no trailing slash (a context path is kept). */
function baseUrlOf(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw validationError([
      { loc: ['body', 'base_url'], msg: "base_url is the Jira site's address, e.g. https://your-team.atlassian.net", type: 'value_error' },
    ]);
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.username || url.password || url.search || url.hash) {
    throw validationError([
      { loc: ['body', 'base_url'], msg: 'base_url is an https:// address with no credentials, query or fragment', type: 'value_error' },
    ]);
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/**
 * Connections to the sources Intake pulls from. A connection is checked when it is saved (a
 * cheap authenticated call); its token is sealed with SECRET_KEY, and never answered or logged.
 */
export const connectionRoutes: FastifyPluginAsyncJsonSchemaToTs<{ Options: { db: Db; config: Config } }> = async (app, { db, config }) => {
  const allowed = config.importAllowPrivate ? () => true : isPublicAddress;
  app.post(
    '/api/connections',
    {
      schema: {
        summary:
          'Save a connection (Jira: site, email, API token), checked with a call to the site first; the token is stored sealed and never shown',
        tags: ['connections'],
        body: {
          type: 'object',
          required: ['type', 'base_url', 'email', 'api_token'],
          additionalProperties: false,
          properties: {
            type: { type: 'string', enum: ['jira'] },
            name: { type: 'string', minLength: 1, maxLength: 200, description: "Default: the site's host" },
            base_url: { type: 'string', minLength: 1, maxLength: 2000, description: 'https://your-team.atlassian.net' },
            email: { type: 'string', minLength: 3, maxLength: 320 },
            api_token: {
              type: 'string',
              minLength: 1,
              maxLength: 4096,
              description: 'An Atlassian API token: stored sealed with SECRET_KEY, never returned',
            },
          },
        },
        response: { 201: connectionSchema, 400: errorRef, 409: errorRef, 422: errorRef, 503: errorRef },
      },
    },
    async (request, reply) => {
      if (!config.secretKey) {
        throw new AppError(
          503,
          'secret_key_missing',
          'Intake stores no secrets without SECRET_KEY: set it to 32 random bytes (openssl rand -hex 32) and restart',
        );
      }
      const body = request.body;
      const baseUrl = baseUrlOf(body.base_url);
      const account = { baseUrl, email: body.email, apiToken: body.api_token };
      try {
        await checkImportHost(new URL(baseUrl), { allowed });
        await checkJiraAccount(account, { allowed, timeoutMs: config.importTimeoutMs });
      } catch (err) {
        if (err instanceof AddressRefused) throw new AppError(422, 'import_refused', err.message);
        if (err instanceof IngestError) throw new AppError(422, 'connection_invalid', `The connection was not saved: ${err.message}`);
        throw err;
      }
      const id = randomUUID();
      const row = await insertConnection(db, {
        id,
        type: body.type,
        name: body.name ?? new URL(baseUrl).host,
        base_url: baseUrl,
        email: body.email,
        secret: seal(config.secretKey, body.api_token, id),
      });
      return reply.code(201).send(shown(row));
    },
  );

  app.get(
    '/api/connections',
    {
      schema: {
        summary: 'The saved connections (never their secrets)',
        tags: ['connections'],
        response: { 200: { type: 'object', required: ['results'], properties: { results: { type: 'array', items: connectionSchema } } } },
      },
    },
    async () => ({ results: (await listConnections(db)).map(shown) }),
  );

  app.get(
    '/api/connections/:id',
    {
      schema: {
        summary: 'One connection (never its secret)',
        tags: ['connections'],
        params: idParams,
        response: { 200: connectionSchema, 404: errorRef },
      },
    },
    async (request) => {
      const row = isUuid(request.params.id) ? await findConnection(db, request.params.id) : undefined;
      if (!row) throw notFound();
      return shown(row);
    },
  );

  app.delete(
    '/api/connections/:id',
    {
      schema: {
        summary: 'Delete a connection and its sealed secret',
        tags: ['connections'],
        params: idParams,
        response: { 204: { type: 'null' }, 404: errorRef, 503: errorRef },
      },
    },
    async (request, reply) => {
      if (!isUuid(request.params.id) || !(await apiTransaction(db, (tx) => deleteConnection(tx, request.params.id)))) throw notFound();
      return reply.code(204).send(null);
    },
  );
};
