// The framework ceiling for bench:api: a bare Fastify route answering a constant job-sized JSON
// document, started the way Intake is (node --import tsx, one process, same Fastify version).
import Fastify from 'fastify';

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
const address = await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' });
console.log(`Server listening at ${address}`);
process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
