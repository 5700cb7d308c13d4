/**
 * Completion webhooks. When a job ends, its payload is POSTed to every WEBHOOK_URLS entry and to
 * the job's callback_url, signed like Stripe's: `Intake-Signature: t=<unix seconds>,v1=<hex
 * HMAC-SHA256 of "<t>.<body>" with WEBHOOK_SECRET>`. The deliveries are rows written with the
 * job's end (see storage/deliveries.ts); every process with workers attempts the ones due,
 * each under a lease, so one delivery is in flight in one process at a time; a failed attempt
 * is tried again after WEBHOOK_RETRY_MS, doubling up to an hour, for a day.
 */
import { createHmac } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { FastifyBaseLogger } from 'fastify';
import { AddressRefused, checkImportUrl, guardedLookup, isPublicAddress } from '../net/fetch.js';
import type { WebhookSettings } from '../config.js';
import type { Db, Queryable } from '../storage/db.js';
import {
  claimDue,
  failExpired,
  insertDeliveries,
  recordAttempt,
  type AttemptResult,
  type DueDelivery,
  type NewDelivery,
} from '../storage/deliveries.js';
import { payloadJson, type JobRow } from '../storage/jobs.js';

const GIVE_UP_AFTER_MS = 24 * 3600_000;
const MAX_RETRY_MS = 3600_000;
const RESPONSE_EXCERPT = 1024;
const BATCH = 8;
const POLL_MS = 1000;

/** The URL as shown: without its query, which may hold a token. */
export const shownUrl = (raw: string) => {
  const url = new URL(raw);
  return `${url.origin}${url.pathname}`;
};

export function signature(secret: string, timestamp: number, body: string): string {
  return `t=${timestamp},v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

const EVENTS: Partial<Record<JobRow['status'], string>> = { completed: 'job.completed', failed: 'job.failed', canceled: 'job.canceled' };

/**
 * The deliveries of a job's end, written in the transaction that ends it (the tracker calls
 * this with every change; only terminal ones make deliveries).
 */
export async function enqueueDeliveries(tx: Queryable, row: JobRow, urls: string[]): Promise<boolean> {
  const event = EVENTS[row.status];
  if (!event) return false;
  const deliveries: NewDelivery[] = urls.map((url) => ({ url, origin: 'config' }));
  if (row.callback_url) deliveries.push({ url: row.callback_url, origin: 'callback' });
  if (deliveries.length === 0) return false;
  await insertDeliveries(tx, row.job_id, row.version, event, payloadJson(row), deliveries);
  return true;
}

/** One POST; its answer (any status) or what went wrong. Never throws. */
async function attempt(delivery: DueDelivery, settings: WebhookSettings): Promise<AttemptResult> {
  const startedAt = new Date();
  const url = new URL(delivery.url);
  const allowed = delivery.origin === 'config' || settings.allowPrivate ? () => true : isPublicAddress;
  const result = (statusCode: number | null, error: string | null, response: string | null): AttemptResult => ({
    startedAt,
    durationMs: Date.now() - startedAt.getTime(),
    statusCode,
    error,
    response,
  });
  try {
    checkImportUrl(url, { allowed }, 'callback URLs'); // an address as the host: never looked up
  } catch (err) {
    return result(null, (err as Error).message, null);
  }
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': 'Intake (webhooks)',
    'intake-event': delivery.event,
    'intake-delivery': delivery.delivery_id,
    'intake-attempt': String(delivery.attempts),
    'content-length': String(Buffer.byteLength(delivery.body)),
  };
  if (settings.secret) headers['intake-signature'] = signature(settings.secret, Math.floor(Date.now() / 1000), delivery.body);
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const settle = (answer: AttemptResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(answer);
    };
    const req = request(url, { method: 'POST', headers, lookup: guardedLookup(url, allowed, 'callback URLs') });
    // The whole attempt, answer included, within the timeout (the lease outlasts it).
    timer = setTimeout(() => req.destroy(new Error(`no answer within ${settings.timeoutMs} ms (WEBHOOK_TIMEOUT_MS)`)), settings.timeoutMs);
    req.once('error', (err: NodeJS.ErrnoException) => {
      const message =
        err instanceof AddressRefused || err.message.startsWith('no answer')
          ? err.message
          : `could not reach ${url.host}: ${err.code ?? err.message}`;
      settle(result(null, message, null));
    });
    req.once('response', (res) => {
      const status = res.statusCode ?? 0;
      const chunks: Buffer[] = [];
      let kept = 0;
      const excerpt = () => Buffer.concat(chunks).toString('utf8') || null;
      res.on('data', (chunk: Buffer) => {
        if (kept < RESPONSE_EXCERPT) chunks.push(chunk.subarray(0, RESPONSE_EXCERPT - kept));
        kept += chunk.length;
      });
      res.once('end', () =>
        settle(result(status, status >= 300 && status < 400 ? `HTTP ${status}: redirects are not followed` : null, excerpt())),
      );
      // Cut off mid-answer (or by the timeout): the status stands, but it is not a delivery.
      res.once('error', () => {});
      res.once('close', () => settle(result(status, `the answer (HTTP ${status}) was cut off before its end`, excerpt())));
    });
    req.end(delivery.body);
  });
}

/** The wait after attempt n (1-based) failed. */
export const retryDelay = (retryMs: number, attempts: number) => Math.min(retryMs * 2 ** Math.min(attempts - 1, 30), MAX_RETRY_MS);

/**
 * Attempts due deliveries until closed: polls every second, and at once when woken (a job of
 * this process ended). Returns wake and close.
 */
export function startDeliveries(db: Db, settings: WebhookSettings, log: FastifyBaseLogger): { wake(): void; close(): Promise<void> } {
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let again = false;

  async function round(): Promise<void> {
    await failExpired(db, GIVE_UP_AFTER_MS);
    for (;;) {
      const due = await claimDue(db, BATCH, settings.timeoutMs + 5000);
      if (due.length === 0) return;
      // Each attempt on its own: one that cannot be recorded (its lease runs out and it is tried
      // again) holds up none of the others.
      await Promise.all(
        due.map(async (delivery) => {
          const result = await attempt(delivery, settings);
          const giveUpAt = new Date(delivery.created_at.getTime() + GIVE_UP_AFTER_MS);
          await recordAttempt(db, delivery, result, retryDelay(settings.retryMs, delivery.attempts), giveUpAt).catch((err: unknown) =>
            log.warn({ err, delivery: delivery.delivery_id }, 'webhook deliveries: could not record an attempt'),
          );
          if (result.error || result.statusCode === null || result.statusCode >= 300) {
            log.warn(
              {
                jobId: delivery.job_id,
                delivery: delivery.delivery_id,
                attempt: delivery.attempts,
                url: shownUrl(delivery.url),
                status: result.statusCode,
                error: result.error,
              },
              'webhook delivery failed',
            );
          }
        }),
      );
      if (closed) return;
    }
  }

  function run(): void {
    if (closed) return;
    if (running) {
      again = true;
      return;
    }
    clearTimeout(timer);
    running = round()
      .catch((err: unknown) => log.warn({ err }, 'webhook deliveries: could not read the due ones'))
      .finally(() => {
        running = undefined;
        if (closed) return;
        if (again) {
          again = false;
          run();
        } else timer = setTimeout(run, POLL_MS);
      });
  }

  timer = setTimeout(run, 0);
  return {
    wake: run,
    async close() {
      closed = true;
      clearTimeout(timer);
      await running;
    },
  };
}
