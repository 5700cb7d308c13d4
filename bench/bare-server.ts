// The framework ceiling for bench:api: a bare Fastify route answering a constant job-sized JSON
// document, started the way Intake is (node --import tsx, one process, same Fastify version).
// With DATABASE_URL it also answers GET /pg/:id with one indexed query by primary key through a
// node-postgres pool: the floor under any route that reads the database, on this machine.
// With REDIS_URL, GET /redis/:id answers with one Redis GET of the job's cache key: the floor
// under the status URL's cache hit.
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import pg from 'pg';

const body = JSON.stringify({
  job_id: '00000000-0000-4000-8000-000000000000',
  source_type: 'csv_upload',
  file_name: 'people.csv',
  status: 'completed',
  submitted_at: '2026-11-28T16:20:01.123Z',
  started_at: '2026-11-28T16:20:01.131Z',
  completed_at: '2026-11-28T16:20:01.140Z',
  records_processed: 2,
  records_failed: 0,
  max_errors: 0,
  bytes_total: 64,
  bytes_processed: 64,
  error: null,
  attempts: 1,
  version: 4,
});

const app = Fastify({ logger: false });
app.get('/constant', async (_request, reply) => reply.type('application/json; charset=utf-8').send(body));
const pool = process.env.DATABASE_URL ? new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10 }) : undefined;
if (pool) {
  app.get<{ Params: { id: string } }>('/pg/:id', async (request, reply) => {
    const { rows } = await pool.query({ name: 'job', text: 'SELECT * FROM ingest_jobs WHERE job_id = $1', values: [request.params.id] });
    return reply
      .code(rows.length > 0 ? 200 : 404)
      .type('application/json; charset=utf-8')
      .send(JSON.stringify(rows[0] ?? null));
  });
}
const redis = process.env.REDIS_URL ? new Redis(process.env.REDIS_URL) : undefined;
redis?.on('error', () => {}); // (c) stops Redis: this route is not used then
if (redis) {
  app.get<{ Params: { id: string } }>('/redis/:id', async (request, reply) => {
    const value = await redis.get(`ingest_job:${request.params.id}`);
    return reply
      .code(value === null ? 404 : 200)
      .type('application/json; charset=utf-8')
      .send(value ?? 'null');
  });
}
const address = await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' });
console.log(`Server listening at ${address}`);
process.once('SIGTERM', () => {
  redis?.disconnect();
  void Promise.all([app.close(), pool?.end()]).then(() => process.exit(0));
});
