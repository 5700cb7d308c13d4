import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobPayload } from '../src/core/job.js';
import { createSandbox, getJson, makeCsv, upload, waitForJob } from './helpers.js';
import { startIntakeProcess, type IntakeProcess } from './process.js';

/**
 * Inputs and crashes that took a whole embedded server down, on a real `intake serve`
 * process: in embedded mode the workers share the API's process.
 */
describe('an embedded server is not brought down by one upload', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  it('survives a record of 150 MiB of commas: a row error, and the process answers on', async () => {
    const sandbox = await createSandbox({ name: 'embedded' });
    cleanup.push(() => sandbox.dispose());
    const intake = await startIntakeProcess(sandbox.env);
    cleanup.push(() => intake.stop('SIGKILL'));
    // More fields than a JavaScript array can hold: Node died with "invalid size error".
    const commas = Buffer.alloc(150 * 1024 ** 2, ',');
    const res = await upload(intake.url, 'commas.csv', new Blob([Buffer.from('a\n'), commas, Buffer.from('\n1\n')]));
    expect(res.status).toBe(202);
    const job = await waitForJob(intake.url, res.body.job_id, 120_000);
    expect(job).toMatchObject({
      status: 'failed',
      records_processed: 0,
      records_failed: 1,
      error: `CSV error on line 2: expected 1 field as in the header, found ${commas.length + 1}`,
    });
    expect(intake.child.exitCode).toBeNull();
    expect((await getJson(`${intake.url}/healthz`)).status).toBe(200);
  });

  it('fails a job whose runs keep taking the process down after MAX_JOB_ATTEMPTS (2 in-process), instead of five restarts', async () => {
    const sandbox = await createSandbox({ name: 'embedded' });
    cleanup.push(() => sandbox.dispose());
    const env = { ...sandbox.env, BATCH_SIZE: '200' };
    let intake: IntakeProcess | undefined;
    cleanup.push(() => intake?.stop('SIGKILL') ?? Promise.resolve());

    /** Starts Intake and kills it (SIGKILL, as a crash would) once the job's new run has committed a batch. */
    async function crashDuringRun(jobId: string | undefined, content?: string): Promise<string> {
      intake = await startIntakeProcess(env);
      const id = jobId ?? (await upload(intake.url, 'many.csv', content!)).body.job_id;
      const before = jobId ? (await getJson<JobPayload>(`${intake.url}/api/job/${id}`)).body.records_processed : 0;
      const deadline = Date.now() + 60_000;
      for (;;) {
        const { body } = await getJson<JobPayload>(`${intake.url}/api/job/${id}`);
        if (body.status === 'running' && body.records_processed > before) break;
        if (body.status !== 'queued' && body.status !== 'running')
          throw new Error(`job ended ${body.status} before the crash: ${body.error}`);
        if (Date.now() > deadline) throw new Error('the job never made progress');
        await sleep(20);
      }
      await intake.stop('SIGKILL');
      return id;
    }

    const jobId = await crashDuringRun(undefined, makeCsv(200_000));
    await crashDuringRun(jobId);
    intake = await startIntakeProcess(env);
    const job = await waitForJob(intake.url, jobId, 60_000);
    expect(job.status).toBe('failed');
    expect(job.error).toMatch(/^gave up after 2 attempts: each time, the worker ingesting this job stopped before finishing/);
    expect(job.attempts).toBe(3);
  });
});
