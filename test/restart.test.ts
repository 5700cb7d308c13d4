import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobPayload } from '../src/schemas/api.js';
import { openPglite } from '../src/storage/pglite.js';
import { backends, createSandbox, getJson, makeCsv, publishedStats, upload, waitForJob, type Backend, type Sandbox } from './helpers.js';
import { runIntake, startIntakeProcess, type IntakeProcess } from './process.js';

const ROWS = 60_000;

/** What a job published, straight from the database, with Intake stopped. */
async function recordStats(backend: Backend, sandbox: Sandbox, jobId: string) {
  if (sandbox.admin) return publishedStats(sandbox.admin, jobId);
  const db = await openPglite(sandbox.dataDir);
  try {
    return await publishedStats(db, jobId);
  } finally {
    await db.close();
  }
}

describe.each(backends())('restart ($name)', (backend) => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  it('resumes a job killed halfway (SIGKILL) from its checkpoint: exact count, no duplicates', async () => {
    const sandbox = await createSandbox(backend);
    cleanup.push(() => sandbox.dispose());
    const env = { ...sandbox.env, BATCH_SIZE: '500' };

    let first: IntakeProcess | undefined = await startIntakeProcess(env);
    cleanup.push(() => first?.stop('SIGKILL') ?? Promise.resolve());
    const { status, body } = await upload(first.url, 'big.csv', makeCsv(ROWS));
    expect(status).toBe(202);
    const jobId: string = body.job_id;

    // Wait until some batches, but not all, are committed; then kill without warning.
    let seen: JobPayload;
    for (;;) {
      seen = (await getJson<JobPayload>(`${first.url}/api/job/${jobId}`)).body;
      if (seen.records_processed >= ROWS / 10 || seen.status !== 'queued' && seen.status !== 'running') break;
      await sleep(5);
    }
    expect(seen.status).toBe('running');
    expect(seen.records_processed).toBeLessThan(ROWS);
    expect(await first.stop('SIGKILL')).toBeNull();
    first = undefined;

    const second = await startIntakeProcess(env);
    cleanup.push(() => second.stop('SIGKILL'));
    const job = await waitForJob(second.url, jobId, 120_000);
    expect(job).toMatchObject({ status: 'completed', records_processed: ROWS, error: null });
    expect(job.started_at).toBe(seen.started_at); // resumed, not restarted
    expect(second.output()).toContain('resuming job from its checkpoint');

    // A clean shutdown: exit 0, lock released, the data directory opens again as it was.
    expect(await second.stop('SIGTERM')).toBe(0);
    expect(existsSync(join(sandbox.dataDir, 'intake.lock'))).toBe(false);
    expect(await recordStats(backend, sandbox, jobId)).toEqual({ n: ROWS, distinct_n: ROWS, min: 0, max: ROWS - 1 });
  });
});

describe('embedded data directory', () => {
  it('refuses a second process on the same DATA_DIR at once, naming the owner', async () => {
    const sandbox = await createSandbox({ name: 'embedded' });
    const first = await startIntakeProcess(sandbox.env);
    try {
      const started = Date.now();
      const second = runIntake(['serve'], { ...sandbox.env, PORT: '0' });
      expect(await second.exited).toBe(2);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(second.output()).toContain(`in use by another Intake process (pid ${first.child.pid})`);
      // The first process is unharmed.
      expect((await getJson(`${first.url}/api/jobs`)).status).toBe(200);
    } finally {
      await first.stop();
      await sandbox.dispose();
    }
  });

  it('stops when the process `npm start` started is sent SIGTERM (as a process manager does)', async () => {
    const sandbox = await createSandbox({ name: 'embedded' });
    // --ignore-scripts skips prestart (the console build, which other tests read meanwhile).
    const npm = spawn('npm', ['start', '--ignore-scripts'], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...sandbox.env, PORT: '0', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    npm.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    npm.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      await expect.poll(() => /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1], { timeout: 60_000, interval: 100 }).toBeTruthy();
      const url = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)![1]!;
      expect((await getJson(`${url}/healthz`)).status).toBe(200);
      expect(output).toContain(`Intake is ready: the console is at ${url}/ and the API docs at ${url}/docs`);
      npm.kill('SIGTERM');
      // Intake itself shuts down: the port is let go and the data directory unlocked.
      await expect.poll(() => fetch(`${url}/healthz`).then(() => 'answering', () => 'gone'), { timeout: 20_000, interval: 200 }).toBe('gone');
      await expect.poll(() => existsSync(join(sandbox.dataDir, 'intake.lock')), { timeout: 10_000 }).toBe(false);
      expect(output).toContain('"msg":"stopped"');
    } finally {
      npm.kill('SIGKILL');
      await sandbox.dispose();
    }
  }, 90_000);

  it('the installed `intake` command runs the CLI', () => {
    const help = execFileSync(process.execPath, ['bin/intake.js', '--help'], { cwd: fileURLToPath(new URL('..', import.meta.url)), encoding: 'utf8' });
    expect(help).toMatch(/^Usage: intake <command>/);
    expect(help).toContain('worker');
  });

  it('exits at start naming the variable when the configuration is bad', async () => {
    for (const [name, value] of [['PORT', 'eighty'], ['MAX_UPLOAD_BYTES', '-1'], ['DATABASE_URL', 'mysql://x'], ['LOG_LEVEL', 'loud']]) {
      const run = runIntake(['serve'], { [name!]: value! });
      expect(await run.exited).toBe(2);
      expect(run.output()).toMatch(new RegExp(`^intake: invalid configuration: ${name} `));
    }
  });
});
