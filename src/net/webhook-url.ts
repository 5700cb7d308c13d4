/** What is wrong with a webhook URL as written, or undefined. */
export function webhookUrlProblem(raw: string): string | undefined {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return `a webhook URL is an absolute http(s) URL (got ${JSON.stringify(raw.slice(0, 80))})`;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `a webhook URL is http or https (got ${url.protocol})`;
  if (url.username || url.password)
    return 'a webhook URL may not hold credentials (put a token in its path or query, or check the signature)';
  if (raw.length > 2048) return 'a webhook URL is at most 2048 characters';
  return undefined;
}
