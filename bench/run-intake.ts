import { spawn } from 'node:child_process';
import { openAsBlob, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function memory(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
}

export interface IngestRun {
  /** Upload start to `completed`. */
  ms: number;
  uploadMs: number;
  records: number;
  /** The process's RSS before the upload, and its peak (VmHWM) at the end. */
  idleRss: number;
  peakRss: number;
}

/**
 * Starts a real `intake serve` with env, uploads the file, polls its status URL until the job
 * ends, and stops the process. Throws unless the job completed.
 */
export async function ingestThroughIntake(env: Record<string, string>, file: string, name: string): Promise<IngestRun> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    let url: string | undefined;
    while (!url) {
      url = /Server listening at (http:\/\/[\d.]+:\d+)/.exec(output)?.[1];
      if (child.exitCode !== null) throw new Error(`intake serve exited:\n${output}`);
      await sleep(50);
    }
    await sleep(500);
    const idleRss = memory(child.pid!, 'VmRSS');
    const started = performance.now();
    const form = new FormData();
    form.append('file', await openAsBlob(file), name);
    const answer = (await (await fetch(`${url}/api/upload`, { method: 'POST', body: form })).json()) as { job_id: string };
    const uploadMs = performance.now() - started;
    let job: { status: string; records_processed: number; error: string | null };
    for (;;) {
      job = (await (await fetch(`${url}/api/job/${answer.job_id}`)).json()) as typeof job;
      if (job.status === 'completed' || job.status === 'failed') break;
      await sleep(50);
    }
    const ms = performance.now() - started;
    const peakRss = memory(child.pid!, 'VmHWM');
    if (job.status !== 'completed') throw new Error(`${name}: the job ended ${job.status}: ${job.error}`);
    return { ms, uploadMs, records: job.records_processed, idleRss, peakRss };
  } finally {
    child.kill('SIGTERM');
    if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve));
  }
}

export const mb = (bytes: number) => `${(bytes / 1024 ** 2).toFixed(0)} MB`;
