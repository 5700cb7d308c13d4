import { execFileSync, spawn } from 'node:child_process';
import { existsSync, openAsBlob, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { NODE_FLAGS } from '../src/cli/node-flags.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

export function memory(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
}

/** A process's RSS once it has settled: it moved less than 1 MB in half a second (or 10 s have passed). */
export async function settledRss(pid: number): Promise<number> {
  let rss = memory(pid, 'VmRSS');
  for (let i = 0; i < 20; i++) {
    await sleep(500);
    const now = memory(pid, 'VmRSS');
    const moved = Math.abs(now - rss);
    rss = now;
    if (moved < 1024 ** 2) break;
  }
  return rss;
}

export interface IngestRun {
  /** Upload start to `completed`. */
  ms: number;
  uploadMs: number;
  records: number;
  /** The process's RSS once start-up has settled, before the upload. */
  idleRss: number;
  /** Its peak (VmHWM) during start-up (in embedded mode, a new data directory's initdb). */
  startPeakRss: number;
  /** Its peak from the upload to `completed` (VmHWM, reset before the upload). */
  peakRss: number;
  /** Latency of the status reads made every 50 ms while the job ran: how responsive the API stayed. */
  statusP50Ms: number;
  statusP99Ms: number;
  statusMaxMs: number;
}

/**
 * Starts a real `intake serve` with env, uploads the file (with `query`, e.g. `?dataset=x`),
 * polls its status URL until the job ends, and stops the process. Throws unless the job completed.
 * `root` is the checkout to run (another release's, for a baseline).
 */
export async function ingestThroughIntake(
  env: Record<string, string>,
  file: string,
  name: string,
  query = '',
  root = ROOT,
): Promise<IngestRun> {
  // This checkout as npm start runs it (compiled); another release's compiled when it was built, else from its sources.
  if (root === ROOT) execFileSync(process.execPath, ['scripts/build.mjs', '--if-stale'], { cwd: ROOT, stdio: 'inherit' });
  const compiled = root === ROOT || existsSync(join(root, 'dist/cli/main.js'));
  const args = compiled ? ['dist/cli/main.js', 'serve'] : ['--import', 'tsx', 'src/cli/main.ts', 'serve'];
  const child = spawn(process.execPath, [...NODE_FLAGS, ...args], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    let url: string | undefined;
    while (!url) {
      url = /Server listening at (http:\/\/[\d.]+:\d+)/.exec(output)?.[1];
      if (child.exitCode !== null) throw new Error(`intake serve exited:\n${output}`);
      await sleep(50);
    }
    const idleRss = await settledRss(child.pid!);
    const startPeakRss = memory(child.pid!, 'VmHWM');
    writeFileSync(`/proc/${child.pid}/clear_refs`, '5'); // resets VmHWM to the current RSS
    const started = performance.now();
    const form = new FormData();
    form.append('file', await openAsBlob(file), name);
    const answer = (await (await fetch(`${url}/api/upload${query}`, { method: 'POST', body: form })).json()) as { job_id: string };
    const uploadMs = performance.now() - started;
    let job: { status: string; records_processed: number; error: string | null };
    const latencies: number[] = [];
    for (;;) {
      const asked = performance.now();
      job = (await (await fetch(`${url}/api/job/${answer.job_id}`)).json()) as typeof job;
      latencies.push(performance.now() - asked);
      if (job.status === 'completed' || job.status === 'failed') break;
      await sleep(50);
    }
    latencies.sort((a, b) => a - b);
    const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!;
    const ms = performance.now() - started;
    const peakRss = memory(child.pid!, 'VmHWM');
    if (job.status !== 'completed') throw new Error(`${name}: the job ended ${job.status}: ${job.error}`);
    return {
      ms,
      uploadMs,
      records: job.records_processed,
      idleRss,
      startPeakRss,
      peakRss,
      statusP50Ms: at(0.5),
      statusP99Ms: at(0.99),
      statusMaxMs: latencies.at(-1)!,
    };
  } finally {
    child.kill('SIGTERM');
    if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve));
  }
}

export const mb = (bytes: number) => `${(bytes / 1024 ** 2).toFixed(0)} MB`;

/** How the status reads went while a job ran, for a benchmark's output line. */
export function statusLatency(run: IngestRun): string {
  return `GET /api/job while loading: p50 ${run.statusP50Ms.toFixed(0)} ms, p99 ${run.statusP99Ms.toFixed(0)} ms, max ${run.statusMaxMs.toFixed(0)} ms`;
}

/** A new, empty database `name` on the server of `base` (dropped first if it is there), and its URL. */
export function freshDatabase(base: string, name: string): string {
  execFileSync('psql', [base, '-qc', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`, '-c', `CREATE DATABASE ${name}`], { stdio: 'ignore' });
  const url = new URL(base);
  url.pathname = `/${name}`;
  return url.toString();
}

export function dropDatabase(base: string, name: string): void {
  execFileSync('psql', [base, '-qc', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`], { stdio: 'ignore' });
}
