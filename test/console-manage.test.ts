/**
 * The console manages what the API manages (issue 26): Jira connections added (checked at once,
 * the token never shown again) and deleted on the Connections page; a schedule's interval edited
 * on its page; a derived dataset saved from the Query page and refreshed by a schedule. Real
 * Chromium against a real Intake, embedded and scale-out, with no console errors.
 *
 * The README's screenshots console-jobs, console-schedule and console-connections (each at 1280
 * and 390 px, `-narrow`) are the ones this file writes to test-output/console-manage/embedded/:
 * copied from there into docs/screenshots/ when the pages change.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startJira, type JiraServer } from './jira-server.js';
import { backends, createSandbox, getJson, postJson, startServer, waitForJob, type Sandbox, type TestServer } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  if (process.env.CI) throw new Error(`CI needs ${CHROMIUM} for the console tests (.ci/run installs Debian's chromium)`);
  console.warn(`${CHROMIUM} is not installed (apt-get install chromium): the browser tests of the console are skipped`);
}

const WIDE = { width: 1280, height: 900 };
const NARROW = { width: 390, height: 844 };

/** POST /api/upload of a small file, with its load options as form fields (sent before the file, as the server reads them). */
async function upload(baseUrl: string, name: string, content: string, fields: Record<string, string>) {
  const form = new FormData();
  for (const [field, value] of Object.entries(fields)) form.append(field, value);
  form.append('file', new Blob([content]), name);
  const res = await fetch(`${baseUrl}/api/upload`, { method: 'POST', body: form });
  return { status: res.status, body: await res.json() };
}

/** Chromium logs each answer of 4xx as a failed resource load: those the test asks for are not problems. */
const unexpected = (problems: string[], statuses: number[] = []) =>
  problems.filter((text) => !statuses.some((status) => text.includes(`status of ${status}`)));

describe.skipIf(!haveChromium).each(backends().filter((backend) => backend.name !== 'postgres'))('console: manage ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;
  let browser: Browser;
  let jira: JiraServer;
  let files: Server;
  let filesUrl: string;
  const shots = join('test-output', 'console-manage', backend.name);

  beforeAll(async () => {
    mkdirSync(shots, { recursive: true });
    jira = await startJira();
    // A file server on loopback: /missing.csv answers 404 (a schedule's failing run), others a small CSV.
    files = createServer((req, res) => {
      const missing = req.url === '/missing.csv';
      res.writeHead(missing ? 404 : 200, { 'content-type': 'text/csv' });
      res.end(missing ? 'no such export' : 'sku,qty\nA-1,3\nB-2,5\n');
    });
    await new Promise<void>((resolve) => files.listen(0, '127.0.0.1', resolve));
    filesUrl = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;
    sandbox = await createSandbox(backend);
    server = await startServer(sandbox, { SECRET_KEY: randomBytes(32).toString('hex'), IMPORT_ALLOW_PRIVATE: 'true' });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--no-first-run',
      ],
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await sandbox?.dispose();
    await jira?.close();
    await new Promise((resolve) => files?.close(resolve));
    expect(server.statuses.filter((status) => status >= 500)).toEqual([]);
  });

  /** A page that records every console error and uncaught exception. */
  async function openPage(path = '/', viewport = WIDE): Promise<{ page: Page; problems: string[] }> {
    const page = await browser.newPage({ viewport });
    const problems: string[] = [];
    page.on('console', (message) => message.type() === 'error' && problems.push(message.text()));
    page.on('pageerror', (err) => problems.push(err.message));
    await page.goto(server.url + path);
    return { page, problems };
  }

  /** Nothing wider than a 390 px screen but the tables' own scroll areas. */
  async function fitsNarrow(page: Page): Promise<void> {
    await page.setViewportSize(NARROW);
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(NARROW.width);
  }

  it('adds a Jira connection from the Connections page (a bad token refused with the check’s error, the token shown nowhere), then deletes it', async () => {
    const { page, problems } = await openPage('/');
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Connections' }).click();
    await page.waitForURL('**/connections');
    await expect.poll(() => page.locator('.empty').textContent()).toContain('No connections yet. A connection keeps what Intake needs');
    expect(await page.locator('.empty code').first().textContent()).toContain(`curl -X POST ${server.url}/api/connections`);
    // Loaded by its address (a reload, a shared link): the page, not a 404.
    await page.reload();
    await expect.poll(() => page.locator('#connections-title').textContent()).toBe('Connections');

    // A bad token: the site's answer, on the page; nothing saved; the token gone from the form.
    const badToken = 'not-the-token-8c1f2e';
    await page.getByLabel('Jira site').fill(jira.url);
    await page.getByLabel('Email').fill(jira.email);
    await page.getByLabel('API token').fill(badToken);
    await page.getByRole('button', { name: 'Check and save' }).click();
    await expect
      .poll(() => page.getByTestId('connection-error').textContent())
      .toBe('The connection was not saved: Jira refused the email and API token (HTTP 401): check both, and that the token is not revoked');
    expect((await getJson(`${server.url}/api/connections`)).body.results).toEqual([]);
    expect(await page.getByLabel('API token').inputValue()).toBe('');
    expect(await page.getByLabel('Jira site').inputValue()).toBe(jira.url); // the rest is kept to try again

    // The right token: saved, listed, and the token nowhere in the page.
    await page.getByLabel('API token').fill(jira.token);
    await page.getByLabel('Name').fill('Team Jira');
    await page.getByRole('button', { name: 'Check and save' }).click();
    const rows = page.locator('tr[data-connection-id]');
    await expect.poll(() => rows.count(), { timeout: 15_000 }).toBe(1);
    const saved = (await getJson(`${server.url}/api/connections`)).body.results;
    expect(saved).toEqual([expect.objectContaining({ type: 'jira', name: 'Team Jira', base_url: jira.url, email: jira.email })]);
    const id: string = saved[0].id;
    expect(await rows.first().getAttribute('data-connection-id')).toBe(id);
    expect(await rows.first().locator('td.connection-site').textContent()).toBe(jira.url + jira.email);
    expect(await rows.first().locator('.connection-email').textContent()).toBe(jira.email);
    expect(await page.locator('.notice-info').textContent()).toContain(`saved: import from it with its id ${id}`);
    expect(await page.locator('[data-testid="connection-error"]').count()).toBe(0);
    const inPage = () =>
      page.evaluate(() => [
        document.documentElement.outerHTML,
        ...[...document.querySelectorAll('input, textarea')].map((field) => (field as HTMLInputElement).value),
        sessionStorage.length ? JSON.stringify({ ...sessionStorage }) : '',
        localStorage.length ? JSON.stringify({ ...localStorage }) : '',
      ]);
    for (const text of await inPage()) {
      expect(text).not.toContain(jira.token);
      expect(text).not.toContain(badToken);
    }
    // Jira saw the check, with the token (as Basic auth), once for each try.
    expect(jira.requests.filter((request) => request.path.startsWith('/rest/api/3/myself'))).toHaveLength(2);
    await page.screenshot({ path: join(shots, 'console-connections.png'), fullPage: true });
    await fitsNarrow(page);
    await page.screenshot({ path: join(shots, 'console-connections-narrow.png'), fullPage: true });
    await page.setViewportSize(WIDE);
    // A reload reads the list from the server: still no token.
    await page.reload();
    await expect.poll(() => rows.count()).toBe(1);
    for (const text of await inPage()) expect(text).not.toContain(jira.token);

    // Delete asks first: dismissed, nothing happens; accepted, it is gone.
    page.once('dialog', (dialog) => void dialog.dismiss());
    await rows.first().getByRole('button', { name: 'Delete' }).click();
    expect((await getJson(`${server.url}/api/connections/${id}`)).status).toBe(200);
    expect(await rows.count()).toBe(1);
    let asked = '';
    page.once('dialog', (dialog) => {
      asked = dialog.message();
      void dialog.accept();
    });
    await rows.first().getByRole('button', { name: 'Delete' }).click();
    await expect.poll(() => rows.count()).toBe(0);
    expect(asked).toMatch(/^Delete the connection Team Jira \(ada@example.com\)\?/);
    expect((await getJson(`${server.url}/api/connections/${id}`)).status).toBe(404);
    await expect.poll(() => page.locator('.empty').textContent()).toContain('No connections yet');
    expect(unexpected(problems, [422])).toEqual([]);
    await page.close();
  }, 60_000);

  it('edits a schedule’s interval on its page (its failing run’s error shown), and the API shows the new interval', async () => {
    const made = await postJson(`${server.url}/api/schedules`, {
      import: { url: `${filesUrl}/missing.csv`, dataset: 'nightly_export' },
      every: '2s',
    });
    expect(made.status).toBe(201);
    const id: string = made.body.schedule_id;
    const { page, problems } = await openPage(`/schedules/${id}`);
    await expect.poll(() => page.getByTestId('schedule-every').textContent()).toBe('2s');
    // Its failed run, with the error, on its page.
    await expect.poll(() => page.locator('.run-error').first().textContent(), { timeout: 30_000 }).toMatch(/HTTP 404/);
    await expect.poll(() => page.locator('pre[data-testid="schedule-error"]').textContent(), { timeout: 30_000 }).toMatch(/HTTP 404/);

    // An interval the API refuses: its reason, and nothing changed.
    const every = page.getByLabel('Run every');
    expect(await every.inputValue()).toBe('2s');
    expect(await page.getByRole('button', { name: 'Change interval' }).isDisabled()).toBe(true); // nothing to change yet
    await every.fill('500ms');
    await page.getByRole('button', { name: 'Change interval' }).click();
    await expect
      .poll(() => page.locator('.notice-error').textContent())
      .toMatch(/^The interval was not changed: .*every is a duration from 1s/);
    expect((await getJson(`${server.url}/api/schedules/${id}`)).body.every).toBe('2s');

    // A good one: saved, shown, and the API has it; the next run one hour after the last.
    await every.fill('1h');
    await page.getByRole('button', { name: 'Change interval' }).click();
    await expect.poll(() => page.getByTestId('schedule-every').textContent()).toBe('1h');
    await expect.poll(() => page.locator('.notice-info').textContent()).toMatch(/^Runs every 1h from now on; next run /);
    const shown = (await getJson(`${server.url}/api/schedules/${id}`)).body;
    expect(shown).toMatchObject({ every: '1h', every_ms: 3_600_000, paused: false });
    expect(Math.abs(Date.parse(shown.next_run_at) - (Date.parse(shown.last_run_at) + 3_600_000))).toBeLessThan(1000);
    expect(await page.locator('.notice-error').count()).toBe(0);
    // "Failing n in a row" counts every failed run its list shows (the schedule itself counts one at its next beat).
    const failedRuns = async () => {
      const runs: { status: string }[] = (await getJson(`${server.url}/api/schedules/${id}`)).body.recent_runs;
      const done = runs.filter((run) => run.status !== 'queued' && run.status !== 'running');
      const since = done.findIndex((run) => run.status !== 'failed');
      return since === -1 ? done.length : since;
    };
    await expect
      .poll(async () => `${(await page.getByTestId('schedule-failures').textContent()) ?? ''} / ${await failedRuns()}`, { timeout: 15_000 })
      .toMatch(/^(\d+) in a row.* \/ \1$/);
    await page.screenshot({ path: join(shots, 'console-schedule.png'), fullPage: true });
    await fitsNarrow(page);
    await page.screenshot({ path: join(shots, 'console-schedule-narrow.png'), fullPage: true });
    expect(unexpected(problems, [422])).toEqual([]);
    await page.close();
  }, 60_000);

  it('saves a derived dataset from the Query page, and a schedule refreshes it when its source grows', async () => {
    const first = await upload(server.url, 'orders.csv', 'sku,qty\nA-1,3\nB-2,5\nC-3,1\n', { dataset: 'orders' });
    expect((await waitForJob(server.url, first.body.job_id)).status).toBe('completed');
    const { page, problems } = await openPage('/query');
    const sql = 'SELECT sku, qty * 2 AS twice FROM orders';
    await page.getByLabel('SQL').fill(sql);
    await page.getByLabel('Save the result as dataset').fill('orders_doubled');
    await page.getByRole('button', { name: 'Save as dataset' }).click();
    await page.waitForURL('**/jobs/*');
    await expect.poll(() => page.locator('[data-status]').first().getAttribute('data-status'), { timeout: 30_000 }).toBe('completed');
    await page.goto(`${server.url}/datasets/orders_doubled`);
    await expect.poll(() => page.getByTestId('dataset-rows').textContent()).toBe('3');

    // A schedule refreshes it from its query; the source grows; a run after that has the new rows.
    const made = await postJson(`${server.url}/api/schedules`, {
      import: { source: 'sql', sql, dataset: 'orders_doubled', mode: 'replace' },
      every: '1s',
    });
    expect(made.status).toBe(201);
    const id: string = made.body.schedule_id;
    const more = await upload(server.url, 'more.csv', 'sku,qty\nD-4,2\nE-5,7\n', { dataset: 'orders', mode: 'append' });
    const grown = await waitForJob(server.url, more.body.job_id);
    expect(grown.status).toBe('completed');
    const refreshed = async () => {
      const runs: { status: string; submitted_at: string; records_processed: number }[] = (
        await getJson(`${server.url}/api/schedules/${id}`)
      ).body.recent_runs;
      return runs.some((run) => run.status === 'completed' && Date.parse(run.submitted_at) > Date.parse(grown.completed_at!));
    };
    await expect.poll(refreshed, { timeout: 30_000, interval: 200 }).toBe(true);
    expect((await fetch(`${server.url}/api/schedules/${id}`, { method: 'DELETE' })).status).toBe(204);
    await page.reload();
    await expect.poll(() => page.getByTestId('dataset-rows').textContent()).toBe('5');
    const jobs = (await getJson(`${server.url}/api/jobs?dataset=orders_doubled&limit=100`)).body.results;
    expect(jobs.every((job: { source_type: string }) => job.source_type === 'sql_query')).toBe(true);
    expect(jobs.length).toBeGreaterThanOrEqual(2); // the save, and the schedule's runs
    expect(unexpected(problems)).toEqual([]);
    await page.close();
  }, 90_000);

  it('shows the jobs list with each job’s dataset and mode, wide and on a phone', async () => {
    const merged = await upload(server.url, 'prices.csv', 'sku,price\nA-1,2.50\nB-2,10\n', {
      dataset: 'prices',
      mode: 'merge',
      key: 'sku',
    });
    expect((await waitForJob(server.url, merged.body.job_id)).status).toBe('completed');
    const { page, problems } = await openPage('/');
    const rows = page.locator('tr[data-job-id]');
    await expect.poll(() => rows.count()).toBeGreaterThan(4);
    expect(await rows.first().locator('td.dataset').textContent()).toContain('prices');
    expect(await rows.first().textContent()).toContain('merge');
    await page.screenshot({ path: join(shots, 'console-jobs.png'), fullPage: true });
    await fitsNarrow(page);
    await page.screenshot({ path: join(shots, 'console-jobs-narrow.png'), fullPage: true });
    expect(unexpected(problems)).toEqual([]);
    await page.close();
  });
});
