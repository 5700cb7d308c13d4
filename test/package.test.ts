import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getJson } from './helpers.js';
import { runCommand } from './process.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

const run = (command: string, args: string[], cwd: string, env: Record<string, string> = {}) => runCommand(command, args, { cwd, env });

// The package as a user gets it: `npm pack`, installed with `npm install -g` into a prefix of
// its own, run from a folder that is not the checkout.
describe('the npm package', () => {
  let work: string;
  let tarball: string;
  let prefix: string;
  let packedFiles: string[];

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'intake-package-'));
    // --ignore-scripts: dist/ is already built (the test setup builds it); prepack would rebuild
    // it under the feet of the other test files.
    const packed = JSON.parse(
      execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: ROOT, encoding: 'utf8' }),
    ) as [{ filename: string; files: { path: string }[] }];
    tarball = join(work, packed[0].filename);
    packedFiles = packed[0].files.map((file) => file.path);
    prefix = join(work, 'prefix');
    // A prefix of its own moves npm's global config file into it too: keep the machine's (its
    // registry, proxy and CA file), or every registry request fails where a CA file is needed.
    const globalconfig = execFileSync('npm', ['config', 'get', 'globalconfig'], { encoding: 'utf8' }).trim();
    const install = await run(
      'npm',
      ['install', '-g', '--prefix', prefix, '--globalconfig', globalconfig, '--prefer-offline', '--no-audit', '--no-fund', tarball],
      work,
    );
    expect(install.code, install.stderr).toBe(0);
  }, 240_000);

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('holds the compiled server, its migrations and the built console, and no sources', () => {
    const files = packedFiles;
    expect(files).toContain('bin/intake.js');
    expect(files).toContain('dist/cli/main.js');
    expect(files).toContain('dist/console/index.html');
    expect(files).toContain('npm-shrinkwrap.json');
    expect(files.filter((file) => file.startsWith('dist/storage/migrations/')).length).toBe(
      readdirSync(join(ROOT, 'src/storage/migrations')).length,
    );
    expect(files.filter((file) => file.startsWith('src/') || file.startsWith('test/') || file.endsWith('.ts'))).toEqual([]);
    const installed = join(prefix, 'lib/node_modules/intake');
    expect(existsSync(join(installed, 'dist/cli/main.js'))).toBe(true);
    // Development tools stay out of an installed Intake.
    for (const dev of ['tsx', 'typescript', 'vite', 'vitest']) expect(existsSync(join(installed, 'node_modules', dev)), dev).toBe(false);
  });

  it('`intake serve` from any folder serves the API and the console, and an upload loads', async () => {
    const elsewhere = join(work, 'elsewhere');
    mkdirSync(elsewhere);
    writeFileSync(join(elsewhere, 'orders.csv'), 'id,qty\n1,2\n2,3\n3,4\n');
    const intake = join(prefix, 'bin/intake');
    expect((await run(intake, ['--version'], elsewhere)).stdout).toBe(`intake ${VERSION} (Node.js ${process.version.slice(1)})\n`);

    const server = spawn(intake, ['serve'], {
      cwd: elsewhere,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        DATA_DIR: join(work, 'data'),
        PORT: '0',
        HOST: '127.0.0.1',
        LOG_FORMAT: 'json',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    server.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    server.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      await expect
        .poll(
          () => /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1] ?? (server.exitCode !== null ? output : undefined),
          { timeout: 60_000, interval: 100 },
        )
        .toMatch(/^http:/);
      const url = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)![1]!;

      const uploaded = await run(intake, ['upload', 'orders.csv', '--wait', '--json'], elsewhere, { INTAKE_URL: url });
      expect(uploaded.code, uploaded.stderr).toBe(0);
      const job = JSON.parse(uploaded.stdout.trim().split('\n').at(-1)!) as { status: string; dataset: string; records_processed: number };
      expect(job).toMatchObject({ status: 'completed', dataset: 'orders', records_processed: 3 });
      const rows = await getJson<{ results: { id: number; qty: number }[] }>(`${url}/api/datasets/orders/rows`);
      expect(rows.body.results.map((row) => Number(row.qty))).toEqual([2, 3, 4]);

      const consolePage = await fetch(`${url}/`);
      expect(consolePage.status).toBe(200);
      expect(await consolePage.text()).toContain('<div id="app"');
      expect((await fetch(`${url}/openapi.json`)).status).toBe(200);
    } finally {
      server.kill('SIGTERM');
      await once(server, 'exit');
    }
  }, 120_000);

  it('`npx` runs the command from the tarball', async () => {
    const result = await run('npx', ['--yes', '--prefer-offline', '--package', tarball, 'intake', '--version'], work);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain(`intake ${VERSION}`);
  }, 180_000);
});

describe('the checkout', () => {
  it('ignores the tarball `npm pack` writes', () => {
    expect(execFileSync('git', ['check-ignore', `intake-${VERSION}.tgz`], { cwd: ROOT, encoding: 'utf8' }).trim()).toBe(
      `intake-${VERSION}.tgz`,
    );
  });

  it('names only npm scripts that exist: in the docs and in the page served when the console is not built', async () => {
    const scripts = Object.keys(
      (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts,
    );
    const { default: Fastify } = await import('fastify');
    const { consoleRoutes } = await import('../src/http/routes/console.js');
    const app = Fastify({ logger: false });
    await app.register(consoleRoutes, { root: join(ROOT, 'no-such-build') });
    const page = await app.inject({ method: 'GET', url: '/' });
    await app.close();
    expect(page.statusCode).toBe(503);
    const texts = { 'the not-built page': page.body, 'README.md': readFileSync(join(ROOT, 'README.md'), 'utf8') };
    for (const doc of readdirSync(join(ROOT, 'docs')).filter((name) => name.endsWith('.md')))
      Object.assign(texts, { [`docs/${doc}`]: readFileSync(join(ROOT, 'docs', doc), 'utf8') });
    expect(page.body).toContain('npm run build');
    for (const [where, text] of Object.entries(texts)) {
      for (const [, script] of text.matchAll(/npm run ([\w:-]+)/g)) expect(scripts, `${where}: npm run ${script}`).toContain(script);
    }
  });
});
