import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { NODE_FLAGS } from '../src/cli/node-flags.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

export interface IntakeProcess {
  child: ChildProcess;
  url: string;
  output(): string;
  /** Sends a signal and waits for the process to exit; resolves with its exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Runs `intake <command>` as a real child process, as a user would. */
export function runIntake(args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, [...NODE_FLAGS, '--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return { child, exited, output: () => output };
}

/** Starts `intake serve` on a free port and waits until it listens. */
export async function startIntakeProcess(env: Record<string, string>, timeoutMs = 30_000): Promise<IntakeProcess> {
  const run = runIntake(['serve'], { PORT: '0', HOST: '127.0.0.1', ...env, LOG_LEVEL: 'info' });
  const deadline = Date.now() + timeoutMs;
  let url: string | undefined;
  while (!url) {
    const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(run.output());
    if (match) url = match[1];
    else if (run.child.exitCode !== null) throw new Error(`intake serve exited with ${run.child.exitCode}:\n${run.output()}`);
    else if (Date.now() > deadline) {
      run.child.kill('SIGKILL');
      throw new Error(`intake serve did not start in ${timeoutMs} ms:\n${run.output()}`);
    } else await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    child: run.child,
    url,
    output: run.output,
    async stop(signal = 'SIGTERM') {
      if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill(signal);
      return run.exited;
    },
  };
}

/** Starts `intake worker` and waits until it has started its workers. */
export async function startWorkerProcess(env: Record<string, string>, timeoutMs = 30_000) {
  const run = runIntake(['worker'], { ...env, LOG_LEVEL: 'info' });
  const deadline = Date.now() + timeoutMs;
  while (!run.output().includes('worker started')) {
    if (run.child.exitCode !== null) throw new Error(`intake worker exited with ${run.child.exitCode}:\n${run.output()}`);
    if (Date.now() > deadline) {
      run.child.kill('SIGKILL');
      throw new Error(`intake worker did not start in ${timeoutMs} ms:\n${run.output()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    child: run.child,
    output: run.output,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill(signal);
      return run.exited;
    },
  };
}

/** Runs a command to its end, with PATH and HOME and `env`; resolves with its exit code and output. */
export async function runCommand(command: string, args: string[], { cwd, env = {} }: { cwd?: string; env?: Record<string, string> } = {}) {
  const child = spawn(command, args, {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}
