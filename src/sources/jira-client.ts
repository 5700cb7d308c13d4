/**
 * Talking to Jira's REST API (v3): Basic auth with the account's email and an API token, over
 * the same guarded HTTP as imports (no private addresses unless IMPORT_ALLOW_PRIVATE).
 */
import { IngestError } from '../core/errors.js';
import { getText, type FetchOptions } from '../net/fetch.js';

export interface JiraAccount {
  baseUrl: string;
  email: string;
  apiToken: string;
}

/** Jira's own words from an error body ({"errorMessages": [...], "errors": {...}}), if any. */
export function jiraMessage(text: string): string {
  try {
    const body = JSON.parse(text) as { errorMessages?: unknown[]; errors?: Record<string, unknown>; message?: unknown };
    const messages = [
      ...(body.errorMessages ?? []),
      ...Object.entries(body.errors ?? {}).map(([field, message]) => `${field}: ${String(message)}`),
    ];
    if (typeof body.message === 'string') messages.push(body.message);
    return messages.map(String).join('; ').slice(0, 500);
  } catch {
    return text.replace(/\s+/g, ' ').trim().slice(0, 200);
  }
}

export async function jiraGet(
  account: JiraAccount,
  path: string,
  options: Pick<FetchOptions, 'allowed' | 'timeoutMs' | 'signal'>,
): Promise<{ status: number; text: string; retryAfter?: string }> {
  const url = new URL(`${account.baseUrl}${path}`);
  const auth = Buffer.from(`${account.email}:${account.apiToken}`).toString('base64');
  return getText(url, options, { authorization: `Basic ${auth}`, accept: 'application/json' }, 64 * 1024 ** 2);
}

/**
 * Checks an account with a cheap authenticated call (GET /rest/api/3/myself): answers the
 * account's display name, or throws an IngestError that says what Jira answered.
 */
export async function checkJiraAccount(account: JiraAccount, options: Pick<FetchOptions, 'allowed' | 'timeoutMs'>): Promise<string> {
  const { status, text } = await jiraGet(account, '/rest/api/3/myself', options);
  if (status === 200) {
    try {
      const { displayName } = JSON.parse(text) as { displayName?: unknown };
      return typeof displayName === 'string' ? displayName : account.email;
    } catch {
      throw new IngestError(`${account.baseUrl} answered /rest/api/3/myself with something other than JSON: is it a Jira site?`);
    }
  }
  if (status === 401 || status === 403)
    throw new IngestError(`Jira refused the email and API token (HTTP ${status}): check both, and that the token is not revoked`);
  if (status === 404)
    throw new IngestError(
      `${account.baseUrl} has no Jira REST API v3 (HTTP 404): give the site's address, e.g. https://your-team.atlassian.net`,
    );
  const said = jiraMessage(text);
  throw new IngestError(`Jira answered HTTP ${status}${said ? `: ${said}` : ''}`);
}
