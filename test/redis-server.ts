import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';

/**
 * A private `redis-server`, a child of the test process, for the tests that stop, hang or
 * flush Redis: the shared Redis at REDIS_URL is used by other suites at the same time and
 * must never be stopped, paused or flushed.
 */
export interface RedisServer {
  port: number;
  url: string;
  child: ChildProcess;
  output(): string;
  /** SIGSTOP: the server keeps its connections open but answers nothing (a hung Redis). */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
  /** Sends a signal (SIGKILL by default) and waits for the process to be gone. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** A TCP port nothing listens on right now (the kernel picks it). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  server.close();
  await once(server, 'close');
  return port;
}

const alive = new Set<ChildProcess>();
// A safety net: a test runner that exits without running cleanup still leaves no server behind.
process.once('exit', () => {
  for (const child of alive) child.kill('SIGKILL');
});

async function launch(port: number, timeoutMs: number): Promise<RedisServer | null> {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  alive.add(child);
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(child, 'exit').then(() => alive.delete(child));
  const deadline = Date.now() + timeoutMs;
  while (!output.includes('Ready to accept connections')) {
    if (child.exitCode !== null || child.signalCode !== null) {
      if (/Address already in use/i.test(output)) return null; // lost a race for the port
      throw new Error(`redis-server on port ${port} exited at start:\n${output}`);
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await exited;
      throw new Error(`redis-server on port ${port} did not start in ${timeoutMs} ms:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    child,
    output: () => output,
    pause() {
      child.kill('SIGSTOP');
    },
    resume() {
      child.kill('SIGCONT');
    },
    async stop(signal: NodeJS.Signals = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
        // A stopped process only acts on SIGKILL; let it see any other signal too.
        if (signal !== 'SIGKILL') child.kill('SIGCONT');
      }
      await exited;
    },
  };
}

/**
 * Starts `redis-server` on `port` (a free one if omitted, e.g. to restart a server on the
 * port of one that was killed) with persistence off, and waits until it accepts connections.
 */
export async function startRedisServer(port?: number, timeoutMs = 10_000): Promise<RedisServer> {
  for (let tries = 0; tries < 5; tries++) {
    const server = await launch(port ?? (await freePort()), timeoutMs);
    if (server) return server;
    if (port !== undefined) await new Promise((resolve) => setTimeout(resolve, 200)); // the old one is still closing
  }
  throw new Error(`could not start redis-server${port ? ` on port ${port}` : ''}: address in use`);
}
