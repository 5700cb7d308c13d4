import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { connect } from 'node:net';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobPayload } from '../src/core/job.js';
import { openPglite } from '../src/storage/pglite.js';
import { DataDirLockedError } from '../src/storage/data-dir-lock.js';
import { ownerTagOf, processIdOf } from '../src/core/process-identity.js';
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
    // The checked path, whose batches commit checkpoints (a fast-path load starts over: below).
    const env = { ...sandbox.env, BATCH_SIZE: '500', FAST_PATH_MAX_BYTES: '0' };

    let first: IntakeProcess | undefined = await startIntakeProcess(env);
    cleanup.push(() => first?.stop('SIGKILL') ?? Promise.resolve());
    const { status, body } = await upload(first.url, 'big.csv', makeCsv(ROWS));
    expect(status).toBe(202);
    const jobId: string = body.job_id;

    // Wait until some batches, but not all, are committed; then kill without warning.
    let seen: JobPayload;
    for (;;) {
      seen = (await getJson<JobPayload>(`${first.url}/api/job/${jobId}`)).body;
      if (seen.records_processed >= ROWS / 10 || (seen.status !== 'queued' && seen.status !== 'running')) break;
      await sleep(5);
    }
    expect(seen.status).toBe('running');
    expect(seen.records_processed).toBeLessThan(ROWS);
    // How the file is read shows while the job runs; the resumed run reads it the same way.
    expect(seen.dialect).toMatchObject({ delimiter: ',', quote: '"' });
    expect(await first.stop('SIGKILL')).toBeNull();
    first = undefined;

    const second = await startIntakeProcess(env);
    cleanup.push(() => second.stop('SIGKILL'));
    const job = await waitForJob(second.url, jobId, 120_000);
    expect(job).toMatchObject({ status: 'completed', records_processed: ROWS, error: null });
    expect(job.started_at).toBe(seen.started_at); // resumed, not restarted
    expect(job.dialect).toEqual(seen.dialect);
    expect(second.output()).toContain('resuming job from its checkpoint');

    // A clean shutdown: exit 0, lock released, the data directory opens again as it was.
    expect(await second.stop('SIGTERM')).toBe(0);
    expect(existsSync(join(sandbox.dataDir, 'intake.lock'))).toBe(false);
    expect(await recordStats(backend, sandbox, jobId)).toEqual({ n: ROWS, distinct_n: ROWS, min: 0, max: ROWS - 1 });
  });

  it.skipIf(backend.name === 'embedded')('starts a fast-path load killed halfway (SIGKILL) over: exact count, no duplicates', async () => {
    const rows = 600_000;
    const sandbox = await createSandbox(backend);
    cleanup.push(() => sandbox.dispose());
    let first: IntakeProcess | undefined = await startIntakeProcess(sandbox.env);
    cleanup.push(() => first?.stop('SIGKILL') ?? Promise.resolve());
    const { status, body } = await upload(first.url, 'big.csv', makeCsv(rows));
    expect(status).toBe(202);
    const jobId: string = body.job_id;
    let seen: JobPayload;
    for (;;) {
      seen = (await getJson<JobPayload>(`${first.url}/api/job/${jobId}`)).body;
      if (seen.records_processed >= rows / 10 || (seen.status !== 'queued' && seen.status !== 'running')) break;
      await sleep(5);
    }
    expect(seen).toMatchObject({ status: 'running', phase: 'publishing' }); // read by COPY, not yet committed
    expect(await first.stop('SIGKILL')).toBeNull();
    first = undefined;
    const second = await startIntakeProcess(sandbox.env);
    cleanup.push(() => second.stop('SIGKILL'));
    const job = await waitForJob(second.url, jobId, 120_000);
    expect(job).toMatchObject({ status: 'completed', records_processed: rows, rows_inserted: rows, error: null, warnings: null });
    expect(second.output()).toContain('starting it over');
    expect(await recordStats(backend, sandbox, jobId)).toEqual({ n: rows, distinct_n: rows, min: 0, max: rows - 1 });
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

  it('takes over a lock file holding its own pid (a container restarted as pid 1 again), but not a lock it holds itself (issue 23, item 6)', async () => {
    const sandbox = await createSandbox({ name: 'embedded' });
    try {
      writeFileSync(join(sandbox.dataDir, 'intake.lock'), String(process.pid));
      const db = await openPglite(sandbox.dataDir);
      try {
        await expect(openPglite(sandbox.dataDir)).rejects.toThrow(DataDirLockedError);
      } finally {
        await db.close();
      }
      expect(existsSync(join(sandbox.dataDir, 'intake.lock'))).toBe(false);
    } finally {
      await sandbox.dispose();
    }
  });

  it("takes over the lock of a killed process not yet reaped (a zombie) and of a pid now another process's; refuses a live owner (issue 23, item 26)", async () => {
    const sandbox = await createSandbox({ name: 'embedded' });
    const lock = join(sandbox.dataDir, 'intake.lock');
    // The shell's child `sleep` is killed; its parent, now `exec sleep`, never reaps it.
    const parent = spawn('sh', ['-c', 'sleep 60 & echo $!; exec sleep 60'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const live = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      const [line] = (await once(parent.stdout, 'data')) as [Buffer];
      const zombie = Number(line.toString().trim());
      const owner = processIdOf(zombie);
      process.kill(zombie, 'SIGKILL');
      await expect.poll(() => processIdOf(zombie).start === owner.start && readFileState(zombie), { timeout: 5000 }).toBe('Z');
      for (const text of [`${zombie} ${owner.start}`, String(zombie)]) {
        writeFileSync(lock, text);
        await (await openPglite(sandbox.dataDir)).close();
      }
      // A live pid, but not the process that wrote the lock (its start time differs).
      const other = processIdOf(live.pid!);
      writeFileSync(lock, `${other.pid} ${Number(other.start) + 1}`);
      await (await openPglite(sandbox.dataDir)).close();
      writeFileSync(lock, `${other.pid} ${other.start}`);
      await expect(openPglite(sandbox.dataDir)).rejects.toThrow(`in use by another Intake process (pid ${other.pid})`);
    } finally {
      parent.kill('SIGKILL');
      live.kill('SIGKILL');
      await sandbox.dispose();
    }
  });

  it("a restart right after kill -9 removes the partial upload the killed process left at once, not a live process's (issue 23, item 26)", async () => {
    const sandbox = await createSandbox({ name: 'embedded' });
    const uploads = join(sandbox.dataDir, 'uploads');
    const live = spawn('sleep', ['60'], { stdio: 'ignore' });
    let first: IntakeProcess | undefined = await startIntakeProcess(sandbox.env);
    let second: IntakeProcess | undefined;
    const client = connect(Number(new URL(first.url).port), '127.0.0.1');
    client.on('error', () => {});
    try {
      await once(client, 'connect');
      client.write(
        'POST /api/upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: 100000\r\n\r\n' +
          '--x\r\nContent-Disposition: form-data; name="file"; filename="half.csv"\r\n\r\na,b\n1,2\n',
      );
      const partials = () => readdirSync(uploads).filter((name) => name.endsWith('.part'));
      await expect.poll(partials, { timeout: 10_000 }).toHaveLength(1);
      // A partial upload of another live process on this machine (a PostgreSQL-mode Intake sharing the directory).
      const livePart = `${randomUUID()}.${ownerTagOf(processIdOf(live.pid!))}.part`;
      writeFileSync(join(uploads, livePart), 'a,b\n');
      expect(await first.stop('SIGKILL')).toBeNull();
      first = undefined;
      second = await startIntakeProcess(sandbox.env);
      await expect.poll(partials, { timeout: 5000 }).toEqual([livePart]);
    } finally {
      client.destroy();
      live.kill('SIGKILL');
      await first?.stop('SIGKILL');
      await second?.stop();
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
    npm.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    npm.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      await expect
        .poll(() => /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1], { timeout: 60_000, interval: 100 })
        .toBeTruthy();
      const url = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)![1]!;
      expect((await getJson(`${url}/healthz`)).status).toBe(200);
      expect(output).toContain(`Intake is ready: the console is at ${url}/ and the API docs at ${url}/docs`);
      npm.kill('SIGTERM');
      // Intake itself shuts down: the port is let go and the data directory unlocked.
      await expect
        .poll(
          () =>
            fetch(`${url}/healthz`).then(
              () => 'answering',
              () => 'gone',
            ),
          { timeout: 20_000, interval: 200 },
        )
        .toBe('gone');
      await expect.poll(() => existsSync(join(sandbox.dataDir, 'intake.lock')), { timeout: 10_000 }).toBe(false);
      expect(output).toContain('"msg":"stopped"');
    } finally {
      npm.kill('SIGKILL');
      await sandbox.dispose();
    }
  }, 90_000);

  it('the installed `intake` command runs the CLI', () => {
    const help = execFileSync(process.execPath, ['bin/intake.js', '--help'], {
      cwd: fileURLToPath(new URL('..', import.meta.url)),
      encoding: 'utf8',
    });
    expect(help).toMatch(/^Usage: intake <command>/);
    expect(help).toContain('worker');
  });

  it('exits at start naming the variable when the configuration is bad', async () => {
    for (const [name, value] of [
      ['PORT', 'eighty'],
      ['MAX_UPLOAD_BYTES', '-1'],
      ['DATABASE_URL', 'mysql://x'],
      ['LOG_LEVEL', 'loud'],
    ]) {
      const run = runIntake(['serve'], { [name!]: value! });
      expect(await run.exited).toBe(2);
      expect(run.output()).toMatch(new RegExp(`^intake: invalid configuration: ${name} `));
    }
  });
});

/** A process's state letter from /proc (Z: a zombie). */
function readFileState(pid: number): string | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}
