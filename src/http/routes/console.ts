import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';

/** Where `npm run build` (run by `npm start`) puts the console: dist/console. */
export const CONSOLE_DIR = fileURLToPath(new URL('../../../dist/console/', import.meta.url));

/**
 * The web console: static files built ahead by Vite. Its pages (`/`, `/jobs/{id}`, `/datasets`,
 * `/datasets/{name}`, `/schedules`, `/schedules/{id}`, `/query`, `/connections`) all answer index.html, the app routes in the browser. Hashed assets are
 * cached for good; the page itself is revalidated so a new build is picked up at once.
 */
export async function consoleRoutes(app: FastifyInstance, { root = CONSOLE_DIR }: { root?: string } = {}): Promise<void> {
  if (!existsSync(`${root}/index.html`)) {
    app.log.warn({ root }, 'the web console is not built: run `npm run build` (npm start does)');
    app.get('/', { schema: { hide: true } }, async (_request, reply) =>
      reply
        .code(503)
        .type('text/html; charset=utf-8')
        .send(
          '<!doctype html><title>Intake</title><p>The web console is not built: run <code>npm run build</code> (<code>npm start</code> does it), then reload. The API is at <a href="/docs">/docs</a>.</p>',
        ),
    );
    return;
  }
  await app.register(fastifyStatic, {
    root,
    prefix: '/',
    index: false,
    wildcard: false, // only the files of the build, listed at start
    dotfiles: 'ignore',
    cacheControl: false,
    setHeaders(reply, path) {
      reply.header('cache-control', path.includes('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache');
    },
  });
  const page = { schema: { hide: true } };
  app.get('/', page, async (_request, reply) => reply.sendFile('index.html'));
  app.get('/jobs/:job_id', page, async (_request, reply) => reply.sendFile('index.html'));
  app.get('/datasets', page, async (_request, reply) => reply.sendFile('index.html'));
  app.get('/datasets/:name', page, async (_request, reply) => reply.sendFile('index.html'));
  app.get('/schedules', page, async (_request, reply) => reply.sendFile('index.html'));
  app.get('/schedules/:id', page, async (_request, reply) => reply.sendFile('index.html'));
  app.get('/query', page, async (_request, reply) => reply.sendFile('index.html'));
  app.get('/connections', page, async (_request, reply) => reply.sendFile('index.html'));
}
