/**
 * A Jira pull as a job's input: issues fetched page by page from /rest/api/3/search/jql
 * (nextPageToken / isLast, the fields asked for explicitly: the endpoint answers ids only
 * otherwise), each written as one NDJSON record — the common fields as columns, the whole
 * issue as `raw` — so a dataset merges them on `id` like any other input. Pages are fetched as
 * the job reads; a cancel aborts the page in flight (or the wait before the next try).
 *
 * Incremental: the query asks only for `updated >= <mark>` where the mark is the newest
 * `updated` the last completed run saw, less an overlap, sent as epoch milliseconds (a date
 * written as text Jira reads in the *account's* time zone, which skips or repeats issues).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { IngestError } from '../core/errors.js';
import { Unreachable, type FetchOptions } from '../net/fetch.js';
import type { Input } from '../formats/parse.js';
import type { ImportSettings } from './imports.js';
import { isPublicAddress } from '../net/fetch.js';
import { unseal } from '../core/secrets.js';
import { findConnection, findJiraMark, saveJiraMark } from '../storage/connections.js';
import type { Queryable } from '../storage/db.js';
import { jiraGet, jiraMessage, type JiraAccount } from './jira-client.js';
import type { Source } from './source.js';

/** The fields asked for: the typed columns' sources (the raw issue holds whatever else Jira sends with them). */
const FIELDS = [
  'summary',
  'status',
  'issuetype',
  'priority',
  'assignee',
  'reporter',
  'created',
  'updated',
  'resolutiondate',
  'labels',
  'project',
  'parent',
  'description',
];
const PAGE_SIZE = 100;
// Issues updated this long before the mark are asked for again (the merge drops the repeats):
// Jira's `updated` has minute precision in JQL.
export const OVERLAP_MS = 2 * 60_000;
const ATTEMPTS = 5;
const MAX_WAIT_MS = 60_000;

export interface JiraPull {
  account: JiraAccount;
  jql: string;
  /** Issues updated at or after this (epoch ms) only; undefined: a full pull. */
  sinceMs?: number;
  options: Pick<FetchOptions, 'allowed' | 'timeoutMs'>;
  /** Waits are multiplied by this (tests shorten them). */
  waitScale?: number;
  /** Learns the newest `updated` seen, as the pull goes. */
  onUpdated(ms: number): void;
}

interface Issue {
  id: string;
  key: string;
  fields?: Record<string, unknown>;
}

/** A member of a JSON object, or undefined when the value is not one. */
const member = (value: unknown, key: string): unknown =>
  value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined;
const name = (value: unknown) => member(value, 'displayName') ?? member(value, 'name') ?? member(value, 'key') ?? null;
const iso = (value: unknown) => {
  if (typeof value !== 'string') return null;
  const ms = Date.parse(value.replace(/([+-]\d{2})(\d{2})$/, '$1:$2'));
  return Number.isNaN(ms) ? value : new Date(ms).toISOString();
};

/** An issue as the dataset's row: typed columns first, the whole issue as `raw`. */
export function issueRecord(issue: Issue): Record<string, unknown> {
  const f = issue.fields ?? {};
  return {
    id: Number(issue.id),
    key: issue.key,
    project: member(f.project, 'key') ?? null,
    summary: f.summary ?? null,
    status: name(f.status),
    issue_type: name(f.issuetype),
    priority: name(f.priority),
    assignee: name(f.assignee),
    reporter: name(f.reporter),
    created: iso(f.created),
    updated: iso(f.updated),
    resolved: iso(f.resolutiondate),
    labels: Array.isArray(f.labels) ? f.labels : null,
    parent: member(f.parent, 'key') ?? null,
    raw: issue,
  };
}

/** The JQL actually sent: the user's query, narrowed to the mark, in a stable order. */
export function pullJql(jql: string, sinceMs: number | undefined): string {
  const since = sinceMs === undefined ? '' : ` AND updated >= ${Math.max(0, sinceMs - OVERLAP_MS)}`;
  return `(${jql})${since} ORDER BY updated ASC, id ASC`;
}

async function page(
  pull: JiraPull,
  jql: string,
  token: string | undefined,
  signal?: AbortSignal,
): Promise<{ issues: Issue[]; nextPageToken?: string; isLast?: boolean }> {
  const params = new URLSearchParams({ jql, maxResults: String(PAGE_SIZE), fields: FIELDS.join(',') });
  if (token) params.set('nextPageToken', token);
  const path = `/rest/api/3/search/jql?${params}`;
  const scale = pull.waitScale ?? 1;
  const wait = (ms: number) => sleep(ms, undefined, { signal }).catch(() => signal!.throwIfAborted());
  for (let attempt = 1; ; attempt++) {
    let answer: { status: number; text: string; retryAfter?: string };
    try {
      answer = await jiraGet(pull.account, path, { ...pull.options, signal });
    } catch (err) {
      if (!(err instanceof Unreachable) || attempt >= ATTEMPTS)
        throw err instanceof Unreachable ? new IngestError(`Jira could not be reached: ${err.message} (${attempt} attempts)`) : err;
      await wait(1000 * 2 ** (attempt - 1) * scale);
      continue;
    }
    const { status, text } = answer;
    if (status === 200) {
      try {
        return JSON.parse(text) as { issues: Issue[]; nextPageToken?: string; isLast?: boolean };
      } catch {
        throw new IngestError('Jira answered a search page with something other than JSON');
      }
    }
    const said = jiraMessage(text);
    const transient = status === 429 || status >= 500;
    if (!transient || attempt >= ATTEMPTS) {
      throw new IngestError(`Jira answered HTTP ${status}${said ? `: ${said}` : ''}${transient ? ` (${attempt} attempts)` : ''}`);
    }
    // Retry-After in seconds (Jira sends seconds), bounded; else exponential backoff.
    const seconds = Number(answer.retryAfter);
    const ms =
      Number.isFinite(seconds) && seconds >= 0 ? Math.min(seconds * 1000, MAX_WAIT_MS) : Math.min(1000 * 2 ** (attempt - 1), MAX_WAIT_MS);
    await wait(ms * scale);
  }
}

/** The pull as NDJSON bytes, a page at a time. */
export function jiraInput(pull: JiraPull, scratchDir: string): Input {
  return {
    scratchDir,
    async open(signal) {
      const jql = pullJql(pull.jql, pull.sinceMs);
      return (async function* () {
        let token: string | undefined;
        for (;;) {
          const result = await page(pull, jql, token, signal);
          const lines: string[] = [];
          for (const issue of result.issues ?? []) {
            const record = issueRecord(issue);
            const updated = typeof record.updated === 'string' ? Date.parse(record.updated) : NaN;
            if (!Number.isNaN(updated)) pull.onUpdated(updated);
            lines.push(JSON.stringify(record));
          }
          if (lines.length > 0) yield Buffer.from(`${lines.join('\n')}\n`);
          if (result.isLast === true || !result.nextPageToken) return;
          token = result.nextPageToken;
        }
      })();
    },
  };
}

/**
 * A Jira job's source: its connection opened with SECRET_KEY and its sync's mark read when the
 * job opens it (so a deleted connection or a changed key fails the job saying so). The newest
 * `updated` the pull saw becomes the sync's mark when the job publishes, in the same
 * transaction. A run never resumes: the pages read before may have changed since.
 */
export function jiraSource(db: Queryable, settings: ImportSettings, source: { connection: string; jql: string }, dataset: string): Source {
  let newest: number | undefined;
  return {
    scratchDir: settings.scratchDir,
    startsOver: 'a Jira pull resumed: pulling again from the start',
    async open(signal) {
      const connection = await findConnection(db, source.connection);
      if (!connection) throw new IngestError(`the connection ${source.connection} no longer exists`);
      if (!settings.secretKey) throw new IngestError("SECRET_KEY is not set: the connection's API token cannot be opened");
      let apiToken: string;
      try {
        apiToken = unseal(settings.secretKey, connection.secret, connection.id);
      } catch (err) {
        throw new IngestError(`the connection's API token cannot be opened: ${(err as Error).message}`);
      }
      const sinceMs = await findJiraMark(db, source.connection, source.jql, dataset);
      const allowed = settings.allowPrivate ? () => true : isPublicAddress;
      return jiraInput(
        {
          account: { baseUrl: connection.base_url, email: connection.email, apiToken },
          jql: source.jql,
          sinceMs,
          options: { allowed, timeoutMs: settings.timeoutMs },
          onUpdated: (ms) => (newest = Math.max(newest ?? ms, ms)),
        },
        settings.scratchDir,
      ).open(signal);
    },
    async published(tx, into) {
      if (newest !== undefined) await saveJiraMark(tx, source.connection, source.jql, into, newest);
    },
  };
}
