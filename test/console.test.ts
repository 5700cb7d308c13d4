import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  backends,
  createSandbox,
  getJson,
  makeCsv,
  postJson,
  postRecords,
  upload,
  waitForJob,
  type Sandbox,
  type TestServer,
  startServer,
} from './helpers.js';
import { jiraTime, startJira } from './jira-server.js';
import { COLUMN_TYPES } from '../src/datasets/types.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  if (process.env.CI) throw new Error(`CI needs ${CHROMIUM} for the console tests (.ci/run installs Debian's chromium)`);
  console.warn(`${CHROMIUM} is not installed (apt-get install chromium): the browser tests of the console are skipped`);
}

/** The web console in real Chromium, against a real Intake, in embedded and scale-out mode. */
describe.skipIf(!haveChromium).each(backends().filter((backend) => backend.name !== 'postgres'))('console ($name)', (backend) => {
  let sandbox: Sandbox;
  let server: TestServer;
  let browser: Browser;
  const shots = join('test-output', 'console', backend.name);

  beforeAll(async () => {
    mkdirSync(shots, { recursive: true });
    sandbox = await createSandbox(backend);
    // Small batches: a 20,000-row file moves through many progress events in the page.
    // A SECRET_KEY: a Jira connection can be saved.
    server = await startServer(sandbox, { BATCH_SIZE: '1000', IMPORT_ALLOW_PRIVATE: 'true', SECRET_KEY: randomBytes(32).toString('hex') });
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
  });

  const closers: (() => void)[] = [];

  afterAll(async () => {
    for (const close of closers) close();
    await browser?.close();
    await server?.close();
    await sandbox?.dispose();
    expect(server.statuses.filter((status) => status >= 500)).toEqual([]);
  });

  /**
   * A CSV served over loopback, growing by a batch of rows every 100 ms until release() is
   * called: its body then ends. Every request reads the same file (rows from 0 to the last
   * one written), so a job started over by another worker (a redelivered queue job whose
   * heartbeat looked stale on a busy machine) reads what the first run read, not a tail that
   * begins where the first request's rows had got to. sent() is the number of rows in the file.
   */
  async function trickle(): Promise<{ url: string; release(): void; sent(): number }> {
    let rows = 0;
    let released = false;
    let complete = false; // the last rows are written: each body ends once it has sent them
    let grow: NodeJS.Timeout | undefined; // from the first request on
    const line = (n: number) => `${n},user ${n},note ${n}\n`;
    const server = createServer((_req, res) => {
      grow ??= setInterval(() => {
        rows += 500;
        if (released) {
          clearInterval(grow);
          complete = true;
        }
      }, 100);
      res.writeHead(200, { 'content-type': 'text/csv' });
      res.write('id,name,note\n');
      let written = 0;
      // Each body follows the file as it grows (a later request catches up at once).
      const timer = setInterval(() => {
        const lines = [];
        for (; written < rows; written++) lines.push(line(written));
        res.write(lines.join(''));
        if (complete && written === rows) {
          clearInterval(timer);
          res.end();
        }
      }, 100);
      res.once('close', () => clearInterval(timer));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    closers.push(() => {
      clearInterval(grow);
      server.close();
    });
    const { port } = server.address() as AddressInfo;
    return { url: `http://127.0.0.1:${port}/blocker.csv`, release: () => (released = true), sent: () => rows };
  }

  /** A page that records every console error and uncaught exception. */
  async function openPage(path = '/', viewport = { width: 1200, height: 900 }): Promise<{ page: Page; problems: string[] }> {
    const page = await browser.newPage({ viewport });
    const problems: string[] = [];
    page.on('console', (message) => message.type() === 'error' && problems.push(message.text()));
    page.on('pageerror', (err) => problems.push(err.message));
    await page.goto(server.url + path);
    return { page, problems };
  }

  /** Records, in the page, each status and each record count a job's row shows, as it is rendered. */
  async function watchBadges(page: Page): Promise<void> {
    await page.evaluate(() => {
      const seen: Record<string, string[]> = {};
      const counts: Record<string, string[]> = {};
      Object.assign(window, { seenStatuses: seen, seenCounts: counts });
      const scan = () => {
        for (const row of document.querySelectorAll('tr[data-job-id]')) {
          const id = row.getAttribute('data-job-id')!;
          const status = row.querySelector('.badge')?.getAttribute('data-status');
          const list = (seen[id] ??= []);
          if (status && list.at(-1) !== status) list.push(status);
          const count = row.querySelector('td.num')?.textContent;
          const countList = (counts[id] ??= []);
          if (count && countList.at(-1) !== count) countList.push(count);
        }
      };
      new MutationObserver(scan).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
      scan();
    });
  }

  /** Picks a file in the upload form (which previews it) and uploads it. */
  async function uploadFromPage(page: Page, file: { name: string; mimeType: string; buffer: Buffer }): Promise<void> {
    await page.setInputFiles('input[type=file]', file);
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
  }

  const seenStatuses = (page: Page, jobId: string) =>
    page.evaluate((id) => (window as unknown as { seenStatuses: Record<string, string[]> }).seenStatuses[id] ?? [], jobId);

  it('shows an empty list, then a job going queued → running → completed live, then its records', async () => {
    const { page, problems } = await openPage();
    await expect.poll(() => page.locator('.empty').textContent()).toContain('No jobs yet');
    await expect.poll(() => page.locator('.live-indicator').textContent()).toBe('Live');
    await page.screenshot({ path: join(shots, 'jobs-empty.png'), fullPage: true });
    await watchBadges(page);
    await page.evaluate(() => ((window as unknown as { sameDocument: boolean }).sameDocument = true));

    // A job that runs until the test lets it finish (an import from a server that sends a
    // batch of rows every 100 ms until released), so the one uploaded through the page waits
    // its turn in the queue however fast the machine is.
    const blockerRows = await trickle();
    const blocker = await postJson(server.url + '/api/import', { url: blockerRows.url, dataset: 'blocker' });
    expect(blocker.status).toBe(202);
    await expect
      .poll(() => page.locator(`tr[data-job-id="${blocker.body.job_id}"] .badge`).textContent(), { timeout: 30_000 })
      .toBe('running');

    await uploadFromPage(page, { name: 'people.csv', mimeType: 'text/csv', buffer: Buffer.from(makeCsv(20_000)) });
    const notice = page.locator('.notice-info');
    await expect.poll(() => notice.textContent()).toContain('people.csv uploaded, job queued');
    const statusUrl = await notice.locator('a.status-url').textContent();
    expect(statusUrl).toMatch(new RegExp(`^${server.url}/api/job/[0-9a-f-]{36}$`));
    const jobId = statusUrl!.slice(-36);
    const row = page.locator(`tr[data-job-id="${jobId}"]`);
    await expect.poll(() => row.locator('.badge').textContent()).toBe('queued');
    await page.screenshot({ path: join(shots, 'jobs-live.png') }); // the blocker running, this one queued
    // Released once the page has shown the blocker's count move a few batches (a fast machine
    // could otherwise finish it in fewer batches than the check below wants to see).
    const seenOf = (id: string) =>
      page.evaluate((jobId) => (window as unknown as { seenCounts: Record<string, string[]> }).seenCounts[jobId]?.length ?? 0, id);
    await expect.poll(() => seenOf(blocker.body.job_id), { timeout: 30_000 }).toBeGreaterThan(3);
    blockerRows.release();
    await expect.poll(() => row.locator('.badge').textContent(), { timeout: 60_000 }).toBe('completed');
    expect(await seenStatuses(page, jobId)).toEqual(['queued', 'running', 'completed']);
    expect(await row.locator('td.num').first().textContent()).toBe('20,000');
    // Live, not reloaded: the same document all along.
    expect(await page.evaluate(() => (window as unknown as { sameDocument?: boolean }).sameDocument)).toBe(true);
    await waitForJob(server.url, blocker.body.job_id, 60_000);
    await expect.poll(() => page.locator(`tr[data-job-id="${blocker.body.job_id}"] .badge`).textContent()).toBe('completed');
    // The running job's record count moved on the page, batch by batch, up to its total.
    const counts = await page.evaluate(
      (id) => (window as unknown as { seenCounts: Record<string, string[]> }).seenCounts[id]!,
      blocker.body.job_id,
    );
    expect(counts.length, counts.join(' → ')).toBeGreaterThan(3);
    expect(counts.at(-1)).toBe(blockerRows.sent().toLocaleString('en-US'));
    await page.screenshot({ path: join(shots, 'jobs-list.png'), fullPage: true });

    // The status URL opens the job in the console.
    await notice.getByRole('link', { name: 'Open the job' }).click();
    await page.waitForURL(`**/jobs/${jobId}`);
    await expect.poll(() => page.locator('.job-head .badge').textContent()).toBe('completed');
    expect(await page.getByTestId('records-processed').textContent()).toBe('20,000');
    expect(await page.locator('.timeline').textContent()).toMatch(/Submitted.*Started.*in the queue.*Completed.*running/);
    expect(await page.getByRole('progressbar', { name: 'Progress' }).getAttribute('aria-valuenow')).toBe('100');
    const records = page.locator('table.records');
    await expect.poll(() => records.locator('tbody tr').count()).toBe(50);
    expect(await records.locator('thead th').allTextContents()).toEqual(['#', 'id', 'name', 'note']);
    expect(await records.locator('tbody tr').first().locator('td').allTextContents()).toEqual([
      '0',
      '0',
      'user 0',
      'note 0, with "quotes" and\na newline',
    ]);
    await page.getByRole('button', { name: 'Show more records' }).click();
    await expect.poll(() => records.locator('tbody tr').count()).toBe(100);
    await page.screenshot({ path: join(shots, 'job-detail.png') });
    expect(problems).toEqual([]);
    await page.close();
  });

  it('shows a failed job with its error and its row errors', async () => {
    const { page, problems } = await openPage();
    const bad = 'id,name,note\n1,a,b\n2,too,many,fields\n3,c,d\n4,short\n5,e,f\n';
    await page.getByLabel('Bad rows allowed').fill('1');
    await uploadFromPage(page, { name: 'bad.csv', mimeType: 'text/csv', buffer: Buffer.from(bad) });
    await page.getByRole('link', { name: 'Open the job' }).click();
    await expect.poll(() => page.locator('.job-head .badge').textContent(), { timeout: 30_000 }).toBe('failed');
    const error = await page.getByTestId('job-error').textContent();
    expect(error).toBe('CSV error on line 5: expected 3 fields as in the header, found 2 (more than max_errors=1 bad rows)');
    expect(await page.getByTestId('records-failed').textContent()).toBe('2 of 1 allowed');
    const errorRows = page.locator('table.row-errors tbody tr');
    await expect.poll(() => errorRows.count()).toBe(2);
    expect(await errorRows.nth(0).locator('td').allTextContents()).toEqual([
      '3',
      '1',
      'CSV error on line 3: expected 3 fields as in the header, found 4',
      '2,too,many,fields',
    ]);
    expect(await errorRows.nth(1).locator('td').first().textContent()).toBe('5');
    // The good rows read before the failure never reached the dataset: the page says so.
    await expect
      .poll(() => page.getByTestId('records-empty').textContent())
      .toBe('None of its records reached dataset bad: a failed job leaves it as it was.');
    expect(await page.locator('table.records').count()).toBe(0);
    await page.screenshot({ path: join(shots, 'job-failed.png'), fullPage: true });

    // An upload the server refuses says why, on the page.
    await page.getByRole('link', { name: '← All jobs' }).click();
    // Its preview says so first, and the upload (the server is the judge) after.
    const refusal =
      'Unsupported file type "notes.txt": send a .csv, .tsv, .json, .ndjson, .jsonl or .xlsx file (gzip, zstd or zip as well), or say format=';
    await page.setInputFiles('input[type=file]', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello') });
    await expect.poll(() => page.locator('.notice-error').allTextContents()).toEqual([`notes.txt could not be previewed: ${refusal}`]);
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    await expect
      .poll(() => page.locator('.notice-error').allTextContents())
      .toEqual([`notes.txt could not be previewed: ${refusal}`, `notes.txt was not accepted: ${refusal}`]);
    // The refused preview and upload are answered 415, which Chromium logs as failed resource loads.
    expect(problems.filter((text) => !text.includes('status of 415'))).toEqual([]);
    await page.close();
  });

  it('uploads a file dropped on the page', async () => {
    const { page, problems } = await openPage();
    // It names every kind of file an upload takes.
    expect(await page.getByTestId('dropzone').textContent()).toContain('Drop CSV, JSON, NDJSON or Excel files (also .gz, .zst, .zip) here');
    await page.getByTestId('dropzone').evaluate((zone) => {
      const transfer = new DataTransfer();
      transfer.items.add(
        new File(['{"records": [{"sku": "A-1", "qty": 3}, {"sku": "B-2", "qty": 1}]}'], 'orders.json', { type: 'application/json' }),
      );
      zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: transfer, bubbles: true, cancelable: true }));
      zone.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    });
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    await page.getByRole('link', { name: 'Open the job' }).click();
    await expect.poll(() => page.locator('.job-head .badge').textContent(), { timeout: 30_000 }).toBe('completed');
    expect(await page.locator('.job-head h2').textContent()).toBe('orders.json');
    await expect.poll(() => page.locator('table.records tbody tr').count()).toBe(2);
    expect(await page.locator('table.records thead th').allTextContents()).toEqual(['#', 'sku', 'qty']); // in the file's order
    expect(problems).toEqual([]);
    await page.close();
  });

  it('filters the list by status, by mouse and by keyboard, and reads on a narrow screen', async () => {
    const { page, problems } = await openPage();
    const rows = page.locator('tr[data-job-id]');
    await expect.poll(() => rows.count()).toBe(4);
    await page.getByLabel('Status').selectOption('failed');
    await page.waitForURL('**/?status=failed');
    await expect.poll(() => page.locator('tr[data-job-id] .badge').allTextContents()).toEqual(['failed']);
    await page.screenshot({ path: join(shots, 'jobs-filtered.png'), fullPage: true });
    await page.getByLabel('Status').selectOption('queued');
    await expect.poll(() => page.locator('.empty').textContent()).toBe('No queued jobs.');

    // Keyboard only: Tab to the filter, choose "completed", Tab on to a job and open it.
    await page.goto(server.url + '/');
    await expect.poll(() => rows.count()).toBe(4);
    const select = page.getByLabel('Status');
    for (let i = 0; i < 20 && !(await select.evaluate((el) => el === document.activeElement)); i++) await page.keyboard.press('Tab');
    expect(await select.evaluate((el) => el === document.activeElement)).toBe(true);
    await select.press('ArrowDown'); // All → queued
    await select.press('ArrowDown'); // → running
    await select.press('ArrowDown'); // → completed
    await page.waitForURL('**/?status=completed');
    await expect.poll(() => page.locator('tr[data-job-id] .badge').allTextContents()).toEqual(['completed', 'completed', 'completed']);
    // On past the dataset filter to the first job's link.
    const focusedJob = () => page.evaluate(() => document.activeElement?.closest('tr')?.getAttribute('data-job-id'));
    for (let i = 0; i < 3 && !(await focusedJob()); i++) await page.keyboard.press('Tab');
    expect(await focusedJob()).toBeTruthy();
    await page.keyboard.press('Enter');
    await page.waitForURL('**/jobs/*');
    await expect.poll(() => page.locator('.job-head .badge').textContent()).toBe('completed');

    // By dataset: typed (or picked from the datasets offered), then Enter.
    await page.goto(server.url + '/');
    await expect.poll(() => rows.count()).toBe(4);
    const datasets = await page.locator('tr[data-job-id] td.dataset a').allTextContents();
    expect(datasets).toHaveLength(4);
    const chosen = datasets[0]!;
    await page.getByLabel('Jobs of dataset').fill(chosen);
    await page.getByLabel('Jobs of dataset').press('Enter');
    await page.waitForURL(`**/?dataset=${chosen}`);
    await expect
      .poll(() => page.locator('tr[data-job-id] td.dataset a').allTextContents())
      .toEqual(datasets.filter((name) => name === chosen));

    // A phone-sized screen: nothing wider than the screen but the tables' own scroll areas, and
    // the jobs table's key columns inside the screen, unscrolled.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(server.url + '/');
    await expect.poll(() => rows.count()).toBe(4);
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    // Inside the table's own scroll area as it shows, unscrolled: nothing cut at its edge.
    const visible = await page
      .locator('table.jobs')
      .evaluate((table) => Math.floor(table.closest('.table-wrap')!.getBoundingClientRect().right));
    expect(visible).toBeLessThanOrEqual(390);
    const edges = await page
      .locator('table.jobs thead th')
      .evaluateAll((cells) =>
        cells
          .filter((cell) => cell.getClientRects().length > 0)
          .map((cell) => [cell.textContent, Math.ceil(cell.getBoundingClientRect().right)]),
      );
    expect(edges.map(([name]) => name)).toEqual(['Status', 'Source', 'Dataset', 'Records', 'Failed']);
    for (const [name, right] of edges) expect(right, String(name)).toBeLessThanOrEqual(visible);
    await page.screenshot({ path: join(shots, 'jobs-narrow.png'), fullPage: true });
    expect(problems).toEqual([]);
    await page.close();
  });

  it('falls back to polling the status URL when the event stream drops', async () => {
    const { page } = await openPage();
    // Every event stream is refused, as by a proxy that does not pass them.
    await page.route('**/events', (route) => route.abort());
    // The indicator's every text is recorded as it is rendered: a fast worker may finish the
    // job before a check could see "polling" on the screen.
    await page.addInitScript(() => {
      const texts: string[] = [];
      Object.assign(window, { indicatorTexts: texts });
      new MutationObserver(() => {
        const text = document.querySelector('.live-indicator')?.textContent;
        if (text !== undefined && text !== null && texts.at(-1) !== text) texts.push(text);
      }).observe(document, { subtree: true, childList: true, characterData: true });
    });
    // A job that runs until the page has shown it polling (however fast the worker).
    const rows = await trickle();
    const job = await postJson(`${server.url}/api/import`, { url: rows.url, dataset: 'polled' });
    const statusUrl = `${server.url}/api/job/${job.body.job_id}`;
    const polls: string[] = [];
    page.on('request', (request) => request.url() === statusUrl && polls.push(request.url()));
    await page.goto(`${server.url}/jobs/${job.body.job_id}`);
    const indicatorTexts = () => page.evaluate(() => (window as unknown as { indicatorTexts: string[] }).indicatorTexts);
    await expect.poll(indicatorTexts, { timeout: 30_000 }).toContain('Reconnecting… (polling)');
    await expect.poll(() => polls.length, { timeout: 30_000 }).toBeGreaterThan(1);
    rows.release();
    await expect.poll(() => page.locator('.job-head .badge').textContent(), { timeout: 60_000 }).toBe('completed');
    // The job's own count first: a page showing another number than the job would be the page's fault.
    const done = await getJson(statusUrl);
    expect(done.body).toMatchObject({ status: 'completed', records_processed: rows.sent() });
    expect(await page.getByTestId('records-processed').textContent()).toBe(rows.sent().toLocaleString('en-US'));
    await page.close();
  });

  it('pages through the list, newest first', async () => {
    for (let i = 0; i < 20; i++) expect((await postRecords(server.url, JSON.stringify([{ n: i }]))).status).toBe(202);
    const all = (await getJson(`${server.url}/api/jobs?limit=100`)).body.results.map((job: { job_id: string }) => job.job_id);
    expect(all.length).toBe(25);
    const { page, problems } = await openPage();
    const ids = () => page.locator('tr[data-job-id]').evaluateAll((rows) => rows.map((row) => row.getAttribute('data-job-id')));
    await expect.poll(ids).toEqual(all.slice(0, 20));
    await page.getByRole('button', { name: 'Older →' }).click();
    await page.waitForURL((url) => url.searchParams.get('start') === '21' && url.searchParams.has('cursor'));
    await expect.poll(ids).toEqual(all.slice(20));
    expect(await page.getByRole('button', { name: 'Older →' }).isDisabled()).toBe(true);
    expect(await page.locator('.pager').textContent()).toContain('21–25');
    await page.getByRole('button', { name: '← Newer' }).click();
    await expect.poll(ids).toEqual(all.slice(0, 20));
    // The browser's Back button goes back to the older page.
    await page.goBack();
    await expect.poll(ids).toEqual(all.slice(20));
    expect(problems).toEqual([]);
    await page.close();
  });

  it('cancels, retries and deletes a job from its page', async () => {
    const { page, problems } = await openPage();
    const job = await upload(server.url, 'long.csv', makeCsv(backend.name === 'embedded' ? 200_000 : 500_000));
    await page.goto(`${server.url}/jobs/${job.body.job_id}`);
    await expect.poll(() => page.locator('.job-head .badge').textContent()).toBe('running');
    await page.getByRole('button', { name: 'Cancel job' }).click();
    await expect.poll(() => page.locator('.job-head .badge').textContent()).toBe('canceled');
    expect(await page.locator('.timeline').textContent()).toContain('Canceled');
    await page.screenshot({ path: join(shots, 'job-canceled.png') });
    await page.getByRole('button', { name: 'Retry' }).click();
    await expect.poll(() => page.locator('.job-head .badge').textContent(), { timeout: 120_000 }).toBe('completed');
    expect(await page.getByTestId('records-processed').textContent()).toBe(backend.name === 'embedded' ? '200,000' : '500,000');
    page.once('dialog', (dialog) => void dialog.accept());
    await page.getByRole('button', { name: 'Delete' }).click();
    await page.waitForURL(`${server.url}/`);
    await expect.poll(() => page.locator(`tr[data-job-id="${job.body.job_id}"]`).count()).toBe(0);
    expect((await fetch(`${server.url}/api/job/${job.body.job_id}`)).status).toBe(404);
    expect(problems).toEqual([]);
    await page.close();
  }, 180_000);

  it('reads the records again when the job ends while a preview page is on its way', async () => {
    const blocker = await upload(server.url, 'blocker.csv', makeCsv(backend.name === 'embedded' ? 60_000 : 300_000));
    const small = await upload(server.url, 'small.csv', makeCsv(30)); // queued behind the blocker
    const { page, problems } = await openPage();
    // The first records page is read while the job waits, and delivered only after it has ended.
    let held = true;
    await page.route('**/records?**', async (route) => {
      if (!held) return route.continue();
      held = false;
      try {
        const response = await route.fetch();
        await waitForJob(server.url, small.body.job_id, 90_000);
        await expect.poll(() => page.locator('.job-head .badge').textContent(), { timeout: 30_000 }).toBe('completed');
        await route.fulfill({ response }); // the page may have given up on it: that is the fix
      } catch {
        // the request was aborted by the page, or the page closed: nothing left to deliver
      }
    });
    await page.goto(`${server.url}/jobs/${small.body.job_id}`);
    await expect.poll(() => page.locator('table.records tbody tr').count(), { timeout: 90_000 }).toBe(30);
    expect(held).toBe(false);
    await waitForJob(server.url, blocker.body.job_id, 90_000);
    expect(problems.filter((text) => !/ERR_FAILED|aborted/i.test(text))).toEqual([]);
    await page.unrouteAll({ behavior: 'ignoreErrors' });
    await page.close();
  });

  it('answers a job that does not exist with a clear page', async () => {
    const { page } = await openPage('/jobs/00000000-0000-4000-8000-000000000000');
    await expect.poll(() => page.locator('.notice-error').textContent()).toContain('There is no job 00000000-0000-4000-8000-000000000000');
    await page.close();
  });

  it('loads uploads into a named dataset (append, then merge on a key) and shows it: columns, rows, jobs, export, SQL, delete', async () => {
    const { page, problems } = await openPage();
    const badge = () => page.locator('.job-head .badge').textContent();
    await page.getByLabel('Dataset', { exact: true }).fill('orders_2026');
    expect(await page.getByLabel('Mode').inputValue()).toBe('append');
    const csv = 'SKU,Qty,Unit Price,Shipped On\r\nA-1,3,2.50,2026-01-05\r\nB-2,1,10,2026-01-06\r\nC-3,5,0.99,2026-01-07\r\n';
    await uploadFromPage(page, { name: 'orders.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) });
    await page.getByRole('link', { name: 'Open the job' }).click();
    await expect.poll(badge, { timeout: 30_000 }).toBe('completed');
    expect(await page.getByTestId('job-dataset').textContent()).toBe('orders_2026');
    expect(await page.getByTestId('job-mode').textContent()).toBe('append');
    expect(await page.getByTestId('rows-inserted').textContent()).toBe('3');

    // A merge: the key field is there for it only, and a merge without a key is refused, on the page.
    await page.getByRole('link', { name: '← All jobs' }).click();
    expect(await page.getByLabel('Key').count()).toBe(0);
    await page.getByLabel('Dataset', { exact: true }).fill('orders_2026');
    await page.getByLabel('Mode').selectOption('merge');
    const update = 'SKU,Qty,Unit Price,Shipped On\r\nB-2,4,10,2026-01-08\r\nD-4,1,3.25,2026-01-09\r\n';
    await uploadFromPage(page, { name: 'update.csv', mimeType: 'text/csv', buffer: Buffer.from(update) });
    await expect
      .poll(() => page.locator('.notice-error').textContent())
      .toBe('update.csv was not accepted: body.key: mode=merge needs key: the column (or comma-separated columns) rows are matched on');
    // The refused file stays chosen: the key put right, it is sent again.
    await page.getByLabel('Key').fill('sku');
    expect(await page.getByTestId('picked').textContent()).toMatch(/^Chosen: update\.csv/);
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    await page.getByRole('link', { name: 'Open the job' }).click();
    await expect.poll(badge, { timeout: 30_000 }).toBe('completed');
    expect(await page.getByTestId('job-mode').textContent()).toBe('merge on sku');
    expect(await page.getByTestId('rows-inserted').textContent()).toBe('1');
    expect(await page.getByTestId('rows-updated').textContent()).toBe('1');
    const mergeUrl = page.url();

    // The job links its dataset.
    await page.getByTestId('job-dataset').getByRole('link').click();
    await page.waitForURL('**/datasets/orders_2026');
    await expect.poll(() => page.locator('#dataset-title').textContent()).toBe('orders_2026');
    expect(await page.getByTestId('dataset-rows').textContent()).toBe('4');
    const schema = await page
      .locator('table.schema tbody tr')
      .evaluateAll((rows) => rows.map((row) => [...row.querySelectorAll('td')].map((cell) => cell.textContent)));
    expect(schema).toEqual([
      ['sku', 'text', 'SKU'],
      ['qty', 'bigint', 'Qty'],
      ['unit_price', 'numeric', 'Unit Price'],
      ['shipped_on', 'date', 'Shipped On'],
    ]);
    const preview = page.locator('table.dataset-rows');
    await expect.poll(() => preview.locator('tbody tr').count()).toBe(4);
    expect(await preview.locator('thead th').allTextContents()).toEqual(['sku', 'qty', 'unit_price', 'shipped_on']);
    const shown = await preview
      .locator('tbody tr')
      .evaluateAll((rows) => rows.map((row) => [...row.querySelectorAll('td')].map((cell) => cell.textContent)));
    expect(shown).toContainEqual(['B-2', '4', '10', '2026-01-08']); // merged: the new values
    expect(shown).toContainEqual(['A-1', '3', '2.5', '2026-01-05']);
    expect(shown.map((row) => row[0]).sort()).toEqual(['A-1', 'B-2', 'C-3', 'D-4']);

    // The jobs that wrote it, newest first, each opening its page.
    const jobLinks = page.locator('tr[data-job-id] td.source a');
    await expect.poll(() => jobLinks.allTextContents()).toEqual(['update.csv', 'orders.csv']);
    await jobLinks.first().click();
    await page.waitForURL(mergeUrl);
    await page.goBack();
    await expect.poll(() => page.locator('table.schema tbody tr').count()).toBe(4);

    // The export goes through the API (a token may be needed) and arrives as a file.
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export CSV' }).click()]);
    expect(download.suggestedFilename()).toBe('orders_2026.csv');
    const exported = readFileSync(await download.path(), 'utf8').split('\r\n');
    expect(exported[0]).toBe('sku,qty,unit_price,shipped_on');
    expect(exported.slice(1, -1).sort()).toEqual([
      'A-1,3,2.50,2026-01-05',
      'B-2,4,10,2026-01-08',
      'C-3,5,0.99,2026-01-07',
      'D-4,1,3.25,2026-01-09',
    ]);
    const [safe] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Export for a spreadsheet' }).click(),
    ]);
    expect(safe.suggestedFilename()).toBe('orders_2026.csv');
    expect(
      readFileSync(await safe.path(), 'utf8')
        .split('\r\n')
        .slice(1, -1)
        .sort(),
    ).toEqual(exported.slice(1, -1).sort()); // nothing here looks like a formula

    await page.screenshot({ path: join(shots, 'dataset.png'), fullPage: true });

    // The dataset links to the query page with a starter query.
    await page.getByRole('link', { name: 'Query it' }).click();
    await page.waitForURL('**/query?sql=*');
    expect(await page.getByLabel('SQL').inputValue()).toBe('SELECT * FROM orders_2026 LIMIT 100');
    // Columns in the query's order, a name given twice shown twice, the row count and the time.
    const sql = 'SELECT sum(qty) AS total, count(*) AS orders, 1 AS orders FROM datasets.orders_2026';
    await page.getByLabel('SQL').fill(sql);
    await page.getByRole('button', { name: 'Run query' }).click();
    const result = page.locator('table.sql-rows');
    await expect.poll(() => result.locator('thead th').allTextContents()).toEqual(['total', 'orders', 'orders']);
    expect(await result.locator('tbody td').allTextContents()).toEqual(['13', '4', '1']);
    expect(await page.locator('.sql-count').textContent()).toMatch(/^1 row in \d[\d,]* ms\.$/);
    await page.screenshot({ path: join(shots, 'query.png'), fullPage: true });
    // The query ran is in the address: a reload (or the link, shared) opens the page with it.
    await page.reload();
    expect(await page.getByLabel('SQL').inputValue()).toBe(sql);
    // The download is the server's stream, byte for byte.
    const [queried] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download CSV' }).click()]);
    expect(queried.suggestedFilename()).toBe('query.csv');
    const streamed = await fetch(`${server.url}/api/sql/export?format=csv`, {
      method: 'POST',
      body: JSON.stringify({ sql }),
      headers: { 'content-type': 'application/json' },
    });
    expect(readFileSync(await queried.path(), 'utf8')).toBe(await streamed.text());
    // Saved as a dataset: a job, whose page the console opens.
    await page.getByLabel('SQL').fill('SELECT sku, qty * 2 AS twice FROM orders_2026');
    await page.getByLabel('Save the result as dataset').fill('orders_doubled');
    await page.getByRole('button', { name: 'Save as dataset' }).click();
    await page.waitForURL('**/jobs/*');
    await expect.poll(() => page.locator('[data-status]').first().getAttribute('data-status'), { timeout: 30_000 }).toBe('completed');
    expect((await getJson(`${server.url}/api/datasets/orders_doubled`)).body).toMatchObject({
      row_count: 4,
      columns: [
        { name: 'sku', type: 'text' },
        { name: 'twice', type: 'bigint' },
      ],
    });
    await page.goBack();
    // A query the server refuses: the page says why.
    await page.getByLabel('SQL').fill('DELETE FROM datasets.orders_2026');
    await page.getByLabel('SQL').press('Control+Enter');
    await expect.poll(() => page.locator('.notice-error').textContent()).toMatch(/^The query was refused: only SELECT queries run here/);
    expect(await result.count()).toBe(0);

    // The list of datasets, from the navigation.
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Datasets' }).click();
    await page.waitForURL('**/datasets');
    const listed = page.locator('tr[data-dataset="orders_2026"]');
    await expect.poll(() => listed.locator('td.num').allTextContents()).toEqual(['4', '4']);
    expect(await listed.locator('td.source .muted').textContent()).toBe('sku, qty, unit_price, shipped_on');
    await page.screenshot({ path: join(shots, 'datasets.png'), fullPage: true });

    // No delete while a job writes the dataset: the page says why. Once it is canceled, the delete goes through.
    const form = new FormData();
    form.append('dataset', 'orders_2026');
    form.append('file', new Blob([makeCsv(backend.name === 'embedded' ? 200_000 : 500_000)]), 'more.csv');
    const writer = (await (await fetch(`${server.url}/api/upload`, { method: 'POST', body: form })).json()) as { job_id: string };
    await listed.getByRole('link', { name: 'orders_2026' }).click();
    await expect.poll(() => page.locator('#dataset-title').textContent()).toBe('orders_2026');
    page.once('dialog', (dialog) => void dialog.accept());
    await page.getByRole('button', { name: 'Delete dataset' }).click();
    await expect
      .poll(() => page.locator('.notice-error').textContent())
      .toBe('A job that writes dataset "orders_2026" is queued or running: cancel it or wait for it to end');
    expect((await fetch(`${server.url}/api/job/${writer.job_id}/cancel`, { method: 'POST' })).status).toBe(200);
    expect((await waitForJob(server.url, writer.job_id, 60_000)).status).toBe('canceled');
    page.once('dialog', (dialog) => void dialog.accept());
    await page.getByRole('button', { name: 'Delete dataset' }).click();
    await page.waitForURL('**/datasets');
    await expect.poll(() => page.locator('table.datasets, .empty').textContent()).not.toBe('Loading…');
    expect(await listed.count()).toBe(0);
    expect((await fetch(`${server.url}/api/datasets/orders_2026`)).status).toBe(404);
    // The refusals (422, 409) are logged by Chromium as failed resource loads.
    expect(problems.filter((text) => !/status of (422|409)/.test(text))).toEqual([]);
    await page.close();
  }, 120_000);

  it('lists a schedule, its last run opening the job, and pauses, resumes and deletes it', async () => {
    const { page, problems } = await openPage();
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Schedules' }).click();
    await page.waitForURL('**/schedules');
    await expect.poll(() => page.locator('.empty').textContent()).toContain('No schedules yet');
    expect(await page.locator('.empty code').textContent()).toContain(`curl -X POST ${server.url}/api/schedules`);
    await page.screenshot({ path: join(shots, 'schedules-empty.png') });

    // A two-row CSV over loopback, imported every 2 s; the list shows it without a reload.
    const csv = createServer((_req, res) => void res.writeHead(200, { 'content-type': 'text/csv' }).end('id,name\n1,a\n'));
    await new Promise<void>((resolve) => csv.listen(0, '127.0.0.1', resolve));
    closers.push(() => csv.close());
    const url = `http://127.0.0.1:${(csv.address() as AddressInfo).port}/ticks.csv`;
    const created = await postJson(`${server.url}/api/schedules`, { import: { url, dataset: 'scheduled_ticks' }, every: '2s' });
    expect(created.status).toBe(201);
    const scheduleId: string = created.body.schedule_id;
    const row = page.locator(`tr[data-schedule-id="${scheduleId}"]`);
    const state = () => row.locator('.state').textContent();
    await expect.poll(() => row.count(), { timeout: 10_000 }).toBe(1);
    expect(await row.locator('td.source a').textContent()).toBe(url);
    expect(await row.getByTestId('schedule-every').textContent()).toBe('2s');
    expect(await row.getByTestId('schedule-dataset').textContent()).toBe('scheduled_ticks');
    expect(await state()).toBe('active');

    // Its runs show up as they happen; the last one's badge opens its job.
    await expect.poll(() => row.locator('td.last-run .badge').allTextContents(), { timeout: 30_000 }).toEqual(['completed']);
    await page.screenshot({ path: join(shots, 'schedules.png'), fullPage: true });
    await row.locator('td.last-run a').click();
    await page.waitForURL('**/jobs/*');
    const jobId = page.url().split('/').at(-1)!;
    expect((await getJson(`${server.url}/api/job/${jobId}`)).body.source_type).toBe('url_import');
    await expect.poll(() => page.locator('.job-head .badge').textContent(), { timeout: 30_000 }).toBe('completed');
    expect(await page.getByTestId('job-dataset').textContent()).toBe('scheduled_ticks');
    expect(await page.getByTestId('records-processed').textContent()).toBe('1');

    // Its own page, loaded by its address: the import, and its recent runs, newest first.
    await page.goto(`${server.url}/schedules/${scheduleId}`);
    await expect.poll(() => page.locator('#schedule-title').textContent()).toBe(url);
    await expect.poll(() => page.locator('tr[data-job-id]').count(), { timeout: 10_000 }).toBeGreaterThan(0);
    const runs = (await getJson(`${server.url}/api/schedules/${scheduleId}`)).body.recent_runs.map((job: { job_id: string }) => job.job_id);
    expect(runs).toContain(jobId);
    await page.screenshot({ path: join(shots, 'schedule.png'), fullPage: true });
    await page.getByRole('link', { name: '← All schedules' }).click();
    await page.waitForURL('**/schedules');

    await row.getByRole('button', { name: 'Pause' }).click();
    await expect.poll(state).toBe('paused');
    expect((await getJson(`${server.url}/api/schedules/${scheduleId}`)).body.paused).toBe(true);
    await row.getByRole('button', { name: 'Resume' }).click();
    await expect.poll(state).toBe('active');
    expect((await getJson(`${server.url}/api/schedules/${scheduleId}`)).body.paused).toBe(false);

    // Delete asks first: dismissed, nothing happens; accepted, the schedule is gone.
    page.once('dialog', (dialog) => void dialog.dismiss());
    await row.getByRole('button', { name: 'Delete' }).click();
    expect((await getJson(`${server.url}/api/schedules/${scheduleId}`)).status).toBe(200);
    expect(await row.count()).toBe(1);
    let asked = '';
    page.once('dialog', (dialog) => {
      asked = dialog.message();
      void dialog.accept();
    });
    await row.getByRole('button', { name: 'Delete' }).click();
    await expect.poll(() => row.count()).toBe(0);
    expect(asked).toBe(`Delete the schedule of ${url}? The jobs it started stay.`);
    expect((await fetch(`${server.url}/api/schedules/${scheduleId}`)).status).toBe(404);
    await expect.poll(() => page.locator('.empty').textContent()).toContain('No schedules yet');
    expect(problems).toEqual([]);
    await page.close();
  });

  it('retries a Windows-1252 file with its encoding in one click, imports by URL and schedules an import from the form', async () => {
    const { page, problems } = await openPage();
    // "Â£" is valid UTF-8 (£), so the file is read as UTF-8 until the é: it fails, naming the encoding to try.
    const latin = Buffer.from('id,name\n1,PrÂ£s\n2,Café\n', 'latin1');
    await page.setInputFiles('input[type=file]', { name: 'latin.csv', mimeType: 'text/csv', buffer: latin });
    // The preview reads it as a load would, and says what to try; the load fails the same way.
    await expect
      .poll(() => page.locator('.notice-error').textContent())
      .toMatch(/^latin\.csv could not be previewed: .*encoding=windows-1252/);
    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    await page.getByRole('link', { name: 'Open the job' }).click();
    await expect.poll(() => page.locator('.job-head .badge').textContent(), { timeout: 30_000 }).toBe('failed');
    expect(await page.getByTestId('job-error').textContent()).toMatch(/retry with encoding=windows-1252/);
    await page.getByRole('button', { name: 'Retry with encoding windows-1252' }).click();
    await expect.poll(() => page.locator('.job-head .badge').textContent(), { timeout: 30_000 }).toBe('completed');
    const answer = await fetch(`${server.url}/api/sql`, {
      method: 'POST',
      body: JSON.stringify({ sql: 'SELECT name FROM latin ORDER BY id' }),
      headers: { 'content-type': 'application/json' },
    });
    expect((await answer.json()).rows).toEqual([['PrÂ£s'], ['Café']]);

    // A file by URL, read by the worker, with the options of the form (a semicolon file, no header).
    const files = createServer((req, res) => {
      res.writeHead(req.url === '/missing.csv' ? 404 : 200, { 'content-type': 'text/csv' });
      res.end(req.url === '/missing.csv' ? 'gone' : '1;a\n2;b\n3;c\n');
    });
    await new Promise<void>((resolve) => files.listen(0, '127.0.0.1', resolve));
    closers.push(() => files.close());
    const base = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;
    await page.goto(server.url + '/');
    await page.getByLabel('URL or S3', { exact: true }).check();
    await page.getByLabel('Address').fill(`${base}/plain.csv`);
    await page.getByLabel('Dataset', { exact: true }).fill('from_url');
    await page.locator('summary', { hasText: 'How to read the file' }).click();
    await page.getByLabel('Delimiter').selectOption(';');
    await page.getByLabel('Header row').selectOption('false');
    // Previewed as the server reads it, with those options; a type set there is the import's.
    await page.getByRole('button', { name: 'Preview', exact: true }).click();
    const urlPreview = page.locator('table.preview-rows');
    await expect.poll(() => urlPreview.locator('th .column-name').allTextContents()).toEqual(['column_1', 'column_2']);
    expect(await urlPreview.locator('th select').evaluateAll((all) => all.map((s) => (s as HTMLSelectElement).value))).toEqual([
      'bigint',
      'text',
    ]);
    expect(await urlPreview.locator('tbody tr').count()).toBe(3);
    await page.getByLabel('Type of column_1').selectOption('numeric');
    await page.getByRole('button', { name: 'Import', exact: true }).click();
    await page.getByRole('link', { name: 'Open the job' }).click();
    await expect.poll(() => page.locator('.job-head .badge').textContent(), { timeout: 30_000 }).toBe('completed');
    expect((await getJson(`${server.url}/api/datasets/from_url`)).body).toMatchObject({
      row_count: 3,
      columns: [
        { name: 'column_1', type: 'numeric' },
        { name: 'column_2', type: 'text' },
      ],
    });

    // "Run every" makes a schedule; a run that fails shows its error on the schedule's page.
    await page.goto(server.url + '/');
    await page.getByLabel('URL or S3', { exact: true }).check();
    await page.getByLabel('Address').fill(`${base}/missing.csv`);
    await page.getByLabel('Dataset', { exact: true }).fill('never_there');
    await page.getByLabel('Run every').fill('2s');
    await page.getByRole('button', { name: 'Create schedule' }).click();
    await page.waitForURL('**/schedules/*');
    await expect.poll(() => page.locator('.run-error').first().textContent(), { timeout: 30_000 }).toMatch(/HTTP 404/);
    await page.screenshot({ path: join(shots, 'schedule-errors.png'), fullPage: true });
    page.once('dialog', (dialog) => void dialog.accept());
    await page.getByRole('button', { name: 'Delete' }).click();
    await page.waitForURL('**/schedules');
    // The preview of the Windows-1252 file is answered 422, which Chromium logs as a failed resource load.
    expect(problems.filter((text) => !text.includes('status of 422'))).toEqual([]);
    await page.close();
  });
  it('previews a chosen file, its columns typed as inferred and editable, the edits loaded as the schema', async () => {
    const { page, problems } = await openPage('/', { width: 1280, height: 1000 });
    // Semicolons, zip codes that read as integers, quantities, dates: as the file would load.
    const zips = ['90210', '10001', '60601', '94103', '33101', '73301', '80202', '98101'];
    const notes = ['first', '', 'third', 'gift wrap', '', 'call ahead', '', 'last'];
    const csv = `id;zip;qty;shipped;note\n${zips.map((zip, i) => `${i + 1};${zip};${(i * 7) % 13};2026-01-0${i + 1};${notes[i]}\n`).join('')}`;
    await page.setInputFiles('input[type=file]', { name: 'zips.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) });
    const table = page.locator('table.preview-rows');
    const names = () => table.locator('th .column-name').allTextContents();
    const types = () => table.locator('th select').evaluateAll((all) => all.map((select) => (select as HTMLSelectElement).value));
    await expect.poll(names).toEqual(['id', 'zip', 'qty', 'shipped', 'note']);
    expect(await types()).toEqual(['bigint', 'bigint', 'bigint', 'date', 'text']);
    // Each column offers exactly the types a schema takes.
    expect(await page.getByLabel('Type of zip').locator('option').allTextContents()).toEqual([...COLUMN_TYPES]);
    expect(await page.getByTestId('preview-summary').textContent()).toBe('CSV · utf-8 · delimiter semicolon · header on line 1 · 8 rows');
    const cells = () =>
      table.locator('tbody tr').evaluateAll((rows) => rows.map((row) => [...row.querySelectorAll('td')].map((cell) => cell.textContent)));
    expect((await cells())[1]).toEqual(['2', '10001', '7', '2026-01-02', '']);

    // A type changed is marked, and told; changed back, it is no edit.
    await page.getByLabel('Type of zip').selectOption('text');
    await page.getByLabel('Type of id').selectOption('text');
    await page.getByLabel('Type of id').selectOption('bigint');
    expect(await table.locator('th.edited .column-name').allTextContents()).toEqual(['zip']);
    expect(await table.locator('th.edited .inferred').textContent()).toBe('read as bigint');
    expect(await page.getByTestId('schema-sent').textContent()).toBe('Types set: zip text');

    // A reading option changed reads the file again: without a header row, the columns are others
    // (the edit does not apply to them); with it again, the edit is back.
    await page.locator('summary', { hasText: 'How to read the file' }).click();
    await page.getByLabel('Header row').selectOption('false');
    await expect.poll(names).toEqual(['column_1', 'column_2', 'column_3', 'column_4', 'column_5']);
    expect(await types()).toEqual(['text', 'text', 'text', 'text', 'text']);
    expect((await cells())[0]).toEqual(['id', 'zip', 'qty', 'shipped', 'note']);
    expect(await page.getByTestId('schema-sent').count()).toBe(0);
    await page.getByLabel('Header row').selectOption('');
    await expect.poll(names).toEqual(['id', 'zip', 'qty', 'shipped', 'note']);
    expect(await types()).toEqual(['bigint', 'text', 'bigint', 'date', 'text']);
    await page.getByLabel('Type of qty').selectOption('numeric');
    expect(await page.getByTestId('schema-sent').textContent()).toBe('Types set: zip text, qty numeric');
    await page.getByLabel('Dataset', { exact: true }).fill('zips');
    await page.getByLabel('Dataset', { exact: true }).blur();

    // The form with its preview, wide and on a phone (nothing wider than the screen but the table's own scroll area).
    await page.screenshot({ path: join(shots, 'upload-preview.png') });
    await page.setViewportSize({ width: 390, height: 1800 });
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
    expect(await table.evaluate((t) => Math.floor(t.closest('.table-wrap')!.getBoundingClientRect().right))).toBeLessThanOrEqual(390);
    await page.screenshot({ path: join(shots, 'upload-preview-narrow.png') });
    await page.setViewportSize({ width: 1280, height: 1000 });

    await page.getByRole('button', { name: 'Upload', exact: true }).click();
    await page.getByRole('link', { name: 'Open the job' }).click();
    await expect.poll(() => page.locator('.job-head .badge').textContent(), { timeout: 30_000 }).toBe('completed');
    expect((await getJson(`${server.url}/api/datasets/zips`)).body).toMatchObject({
      row_count: 8,
      columns: [
        { name: 'id', type: 'bigint' },
        { name: 'zip', type: 'text' },
        { name: 'qty', type: 'numeric' },
        { name: 'shipped', type: 'date' },
        { name: 'note', type: 'text' },
      ],
    });
    const rows = await postJson(`${server.url}/api/sql`, { sql: 'SELECT zip, qty FROM zips ORDER BY id' });
    expect(rows.body.columns).toEqual([
      { name: 'zip', type: 'text' },
      { name: 'qty', type: 'numeric' },
    ]);
    expect(rows.body.rows).toEqual(zips.map((zip, i) => [zip, (i * 7) % 13]));
    expect(problems).toEqual([]);
    await page.close();
  });

  it('pulls Jira issues from the form through a saved connection, and says where to add one when there is none', async () => {
    const { page, problems } = await openPage();
    await page.getByLabel('Jira', { exact: true }).check();
    const none = page.locator('.upload .notice-info');
    await expect.poll(() => none.textContent()).toContain('No Jira connection yet');
    expect(await none.getByRole('link', { name: 'Connections page' }).getAttribute('href')).toBe('/connections');
    expect(await page.getByRole('button', { name: 'Import', exact: true }).isDisabled()).toBe(true);

    const jira = await startJira();
    closers.push(() => void jira.close());
    const ISSUES = 250;
    const start = Date.UTC(2025, 0, 1);
    for (let n = 1; n <= ISSUES; n++) {
      const updated = start + n * 60_000;
      jira.issues.push({
        id: String(20_000 + n),
        key: `WEB-${n}`,
        fields: {
          summary: `issue ${n}`,
          status: { name: n % 2 ? 'To Do' : 'Done' },
          issuetype: { name: 'Task' },
          priority: { name: 'Medium' },
          assignee: null,
          reporter: { displayName: 'Ada Lovelace' },
          created: jiraTime(updated - 60_000),
          updated: jiraTime(updated),
          resolutiondate: null,
          labels: [],
          project: { key: 'WEB' },
        },
      });
    }
    const saved = await postJson(`${server.url}/api/connections`, {
      type: 'jira',
      name: 'Test Jira',
      base_url: jira.url,
      email: jira.email,
      api_token: jira.token,
    });
    expect(saved.status).toBe(201);

    // Chosen again, Jira reads the connections again.
    await page.getByLabel('File', { exact: true }).check();
    await page.getByLabel('Jira', { exact: true }).check();
    await expect.poll(() => page.getByLabel('Connection').locator('option').allTextContents()).toEqual([`Test Jira (${jira.email})`]);
    expect(await page.getByLabel('Connection').inputValue()).toBe(saved.body.id);
    // Issues merge on their id: no mode, key or reading options to set.
    expect(await page.getByLabel('Mode').count()).toBe(0);
    expect(await page.locator('summary', { hasText: 'How to read the file' }).count()).toBe(0);
    await page.getByLabel('JQL').fill('project = WEB');
    await page.getByLabel('Dataset', { exact: true }).fill('web_issues');
    await page.getByRole('button', { name: 'Import', exact: true }).click();
    await expect.poll(() => page.locator('.upload .notice-info').textContent()).toContain('Jira: project = WEB to import, job queued');
    await page.getByRole('link', { name: 'Open the job' }).click();
    await expect.poll(() => page.locator('.job-head .badge').textContent(), { timeout: 60_000 }).toBe('completed');
    expect(await page.getByTestId('records-processed').textContent()).toBe('250');
    const jobId = page.url().split('/').at(-1)!;
    expect((await getJson(`${server.url}/api/job/${jobId}`)).body).toMatchObject({
      source_type: 'jira_ingest',
      dataset: 'web_issues',
      mode: 'merge',
      records_processed: ISSUES,
      rows_inserted: ISSUES,
    });
    expect((await getJson(`${server.url}/api/datasets/web_issues`)).body.row_count).toBe(ISSUES);
    expect(jira.searches.at(-1)).toMatch(/^\(project = WEB\)/);
    expect(problems).toEqual([]);
    await page.close();
  });
});
