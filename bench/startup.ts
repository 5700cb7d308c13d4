/**
 * npm run bench:startup [-- RUNS]: how long `intake serve` takes from exec to listening, and what
 * it holds once idle, run from the TypeScript sources through tsx (as before the compiled build)
 * and from dist/ (as npm start and the installed command run it), alternately, RUNS times each
 * (default 5), in embedded mode (a new data directory, and one that exists) and on PostgreSQL
 * (with DATABASE_URL). Medians; the ratio is dist / tsx.
 */
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { NODE_FLAGS } from '../src/cli/node-flags.js';
import { memory, settledRss } from './run-intake.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const RUNS = Number(process.argv[2] ?? 5);
const RUNNERS = {
  tsx: [...NODE_FLAGS, '--import', 'tsx', 'src/cli/main.ts', 'serve'],
  dist: [...NODE_FLAGS, 'dist/cli/main.js', 'serve'],
};

interface Start {
  ms: number;
  idleRss: number;
  peakRss: number;
}

async function start(args: string[], env: Record<string, string>): Promise<Start> {
  const started = performance.now();
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PORT: '0', LOG_LEVEL: 'info', LOG_FORMAT: 'json', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    while (!output.includes('Server listening at')) {
      if (child.exitCode !== null) throw new Error(`intake serve exited:\n${output}`);
      await sleep(5);
    }
    const ms = performance.now() - started;
    const idleRss = await settledRss(child.pid!);
    return { ms, idleRss, peakRss: memory(child.pid!, 'VmHWM') };
  } finally {
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const mb = (bytes: number) => `${(bytes / 1024 ** 2).toFixed(0)} MB`;

execFileSync(process.execPath, ['scripts/build.mjs', '--if-stale'], { cwd: ROOT, stdio: 'inherit' });
const work = mkdtempSync(join(tmpdir(), 'intake-startup-'));
try {
  // An existing data directory: made once, copied for each run (a run must not find it locked or changed).
  const made = join(work, 'made');
  await start(RUNNERS.dist, { DATA_DIR: made });

  const modes: [string, (run: number) => Record<string, string>][] = [
    ['embedded, new DATA_DIR', (run) => ({ DATA_DIR: join(work, `new-${run}`) })],
    [
      'embedded, existing    ',
      (run) => (cpSync(made, join(work, `old-${run}`), { recursive: true }), { DATA_DIR: join(work, `old-${run}`) }),
    ],
  ];
  if (process.env.DATABASE_URL)
    modes.push(['PostgreSQL            ', (run) => ({ DATA_DIR: join(work, `pg-${run}`), DATABASE_URL: process.env.DATABASE_URL! })]);
  else console.log('(no DATABASE_URL: the PostgreSQL row is left out)');

  console.log(`intake serve, median of ${RUNS} starts each          time to listening        idle RSS            peak RSS`);
  let run = 0;
  for (const [label, envOf] of modes) {
    const results: Record<keyof typeof RUNNERS, Start[]> = { tsx: [], dist: [] };
    for (let i = 0; i < RUNS; i++) {
      for (const runner of ['tsx', 'dist'] as const) results[runner].push(await start(RUNNERS[runner], envOf(run++)));
    }
    const of = (runner: keyof typeof RUNNERS, field: keyof Start) => median(results[runner].map((result) => result[field]));
    console.log(
      `${label}  tsx → dist   ${of('tsx', 'ms').toFixed(0).padStart(5)} → ${of('dist', 'ms').toFixed(0).padStart(5)} ms (× ${(of('dist', 'ms') / of('tsx', 'ms')).toFixed(2)})` +
        `   ${mb(of('tsx', 'idleRss'))} → ${mb(of('dist', 'idleRss'))}   ${mb(of('tsx', 'peakRss'))} → ${mb(of('dist', 'peakRss'))}`,
    );
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
