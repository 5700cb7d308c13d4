/**
 * Reading an import's URL: http(s) only, each hop's address checked before it is connected to
 * (no SSRF: loopback, private, link-local and metadata addresses are refused unless
 * IMPORT_ALLOW_PRIVATE), the address checked being the one connected to (no DNS rebinding in
 * between), redirects followed a few times and checked the same way, transient failures
 * (connection errors, 429, 5xx) tried again with backoff, and a clear failure for the rest.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { IngestError } from '../core/errors.js';

const MAX_REDIRECTS = 5;
const ATTEMPTS = 3;

// Addresses an import must not reach by default (RFC 6890 special-purpose ranges, and the
// cloud metadata services: 169.254.169.254 is link-local, fd00:ec2::254 unique-local).
// Two lists: BlockList matches an IPv4 address against IPv6 rules too (as ::ffff:a.b.c.d).
const FORBIDDEN_V4 = new BlockList();
const FORBIDDEN_V6 = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  FORBIDDEN_V4.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::', 96], // unspecified, loopback and IPv4-compatible (::a.b.c.d, ::7f00:1)
  ['::ffff:0:0', 96], // IPv4-mapped: an IPv4 address in disguise
  ['::ffff:0:0:0', 96], // IPv4-translated (SIIT): likewise
  ['64:ff9b::', 96], // NAT64: likewise
  ['64:ff9b:1::', 48], // NAT64 for local use
  ['100::', 64], // discard
  ['fc00::', 7],
  ['fe80::', 10],
  ['fec0::', 10], // site-local (deprecated, still private)
  ['ff00::', 8],
] as const) {
  FORBIDDEN_V6.addSubnet(network, prefix, 'ipv6');
}

/** The 16 bytes of an IPv6 address in any spelling (a zone, `::`, a dotted IPv4 tail). */
function ipv6Bytes(address: string): number[] {
  const [head = '', tail] = address.replace(/%.*$/, '').split('::');
  const groups = (text: string) =>
    text === ''
      ? []
      : text.split(':').flatMap((group) => {
          if (!group.includes('.')) return [parseInt(group, 16)];
          const [a = 0, b = 0, c = 0, d = 0] = group.split('.').map(Number);
          return [(a << 8) | b, (c << 8) | d];
        });
  const front = groups(head);
  const back = tail === undefined ? [] : groups(tail);
  const words = [...front, ...Array<number>(8 - front.length - back.length).fill(0), ...back];
  return words.flatMap((word) => [word >> 8, word & 0xff]);
}

/**
 * The IPv4 addresses an IPv6 address is routed to besides the ranges above: 6to4
 * (2002:V4HI:V4LO::/48) and Teredo (2001:0::/32: the server's address, then the client's
 * inverted in the last 32 bits).
 */
function embeddedV4(bytes: number[]): string[] {
  const v4 = (at: number, mask = 0) =>
    bytes
      .slice(at, at + 4)
      .map((b) => b ^ mask)
      .join('.');
  if (bytes[0] === 0x20 && bytes[1] === 0x02) return [v4(2)];
  if (bytes[0] === 0x20 && bytes[1] === 0x01 && bytes[2] === 0 && bytes[3] === 0) return [v4(4), v4(12, 0xff)];
  return [];
}

/** Whether an import may connect to this address by default. */
export function isPublicAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  if (family === 4) return !FORBIDDEN_V4.check(address, 'ipv4');
  // Checked in one spelling (eight hex groups), so no other spelling slips past the lists.
  const bytes = ipv6Bytes(address);
  const canonical = Array.from({ length: 8 }, (_, i) => ((bytes[2 * i]! << 8) | bytes[2 * i + 1]!).toString(16)).join(':');
  if (FORBIDDEN_V6.check(canonical, 'ipv6')) return false;
  return embeddedV4(bytes).every((v4) => !FORBIDDEN_V4.check(v4, 'ipv4'));
}

export interface FetchOptions {
  /** Which addresses may be connected to (default: public ones only). */
  allowed: (address: string) => boolean;
  /** For the connection, the response's headers, and each wait for more of its body. */
  timeoutMs: number;
  maxBytes: number;
  /** Waits between attempts (ms): tests shorten them. */
  backoffMs?: number;
  /** Aborts the request, the wait for its answer or body, or the wait between attempts: they throw its reason. */
  signal?: AbortSignal;
}

/** Whether an error is worth another attempt: the network or the server, not the request. */
class Transient extends Error {}

const hostOf = (url: URL) => url.hostname.replace(/^\[|\]$/g, '');

/** The network failed (no connection, a timeout): worth another try. */
export class Unreachable extends IngestError {}

/** An address an import may not reach. */
export class AddressRefused extends IngestError {}

function refused(url: URL, address: string, who = 'imports'): IngestError {
  const what = hostOf(url) === address ? address : `${url.host} resolves to ${address}`;
  return new AddressRefused(
    `${what}, a loopback, private, link-local or metadata address: ${who} may not reach it (IMPORT_ALLOW_PRIVATE=true allows it)`,
  );
}

/** Checks a URL before anything is connected to: its scheme, and its host if it is an address. */
export function checkImportUrl(url: URL, options: Pick<FetchOptions, 'allowed'>, who = 'imports'): void {
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new IngestError(`${url.protocol}// URLs cannot be imported: use http, https or s3`);
  const host = hostOf(url);
  if (isIP(host) && !options.allowed(host)) throw refused(url, host, who);
}

/** Resolves a URL's host and refuses it if any of its addresses is not allowed (a DNS failure is left to the fetch). */
export async function checkImportHost(url: URL, options: Pick<FetchOptions, 'allowed'>, who = 'imports'): Promise<void> {
  checkImportUrl(url, options, who);
  const host = hostOf(url);
  if (isIP(host)) return;
  // A resolver that does not answer leaves the check to the fetch (which checks every hop).
  const addresses = await new Promise<LookupAddress[]>((resolve) => {
    const timer = setTimeout(() => resolve([]), 5000);
    dnsLookup(host, { all: true }, (err, found) => {
      clearTimeout(timer);
      resolve(err ? [] : found);
    });
  });
  const bad = addresses.find((a) => !options.allowed(a.address));
  if (bad) throw refused(url, bad.address, who);
}

/**
 * The `lookup` of an http(s) request to `url` that connects only to allowed addresses: the
 * address checked is the one connected to (no DNS rebinding in between). A refusal is an
 * AddressRefused error of the request.
 */
export function guardedLookup(url: URL, allowed: (address: string) => boolean, who = 'imports'): LookupFunction {
  return (hostname, lookupOptions, callback) => {
    dnsLookup(hostname, { all: true }, (err, addresses: LookupAddress[]) => {
      // On an error the address is not read: an empty list stands in for it.
      if (err) return callback(err, []);
      const bad = addresses.find((a) => !allowed(a.address));
      if (bad) return callback(refused(url, bad.address, who), []);
      if (lookupOptions.all) callback(null, addresses);
      else callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
}

/** One GET, connected only to an allowed address; answers the response (any status). */
function get(
  url: URL,
  options: Pick<FetchOptions, 'allowed' | 'timeoutMs' | 'signal'>,
  headers: Record<string, string> = {},
): Promise<IncomingMessage> {
  options.signal?.throwIfAborted();
  checkImportUrl(url, options);
  const lookup = guardedLookup(url, options.allowed);
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const { signal } = options;
    const req = request(url, {
      method: 'GET',
      lookup,
      headers: { 'user-agent': 'Intake (import)', accept: '*/*', ...headers },
      timeout: options.timeoutMs,
      signal,
    });
    req.once('response', resolve);
    req.once('timeout', () => req.destroy(new Transient(`no answer from ${url.host} within ${options.timeoutMs} ms (IMPORT_TIMEOUT_MS)`)));
    req.once('error', (err: NodeJS.ErrnoException) => {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the abort's own reason, as the caller gave it
      if (signal?.aborted) return reject(signal.reason);
      if (err instanceof IngestError || err instanceof Transient) return reject(err);
      if (err.code === 'ENOTFOUND') return reject(new IngestError(`the host ${url.hostname} does not resolve (DNS: ${err.code})`));
      if (err.code === 'ERR_TLS_CERT_ALTNAME_INVALID' || /certificate/i.test(err.message))
        return reject(new IngestError(`the TLS certificate of ${url.host} is not valid: ${err.message}`));
      reject(new Transient(`could not reach ${url.host}: ${err.code ?? err.message}`));
    });
    req.end();
  });
}

/** Follows redirects; answers the final 2xx response, or throws (IngestError: not worth retrying). */
async function follow(start: URL, options: FetchOptions): Promise<IncomingMessage> {
  let url = start;
  for (let hop = 0; ; hop++) {
    const res = await get(url, options);
    const status = res.statusCode ?? 0;
    if (status >= 200 && status < 300) return res;
    res.resume();
    const where = `${url.origin}${url.pathname}`;
    if (status >= 300 && status < 400 && res.headers.location) {
      if (hop >= MAX_REDIRECTS) throw new IngestError(`${where} redirects more than ${MAX_REDIRECTS} times`);
      url = new URL(res.headers.location, url);
      continue;
    }
    if (status === 429 || status >= 500) throw new Transient(`${where} answered HTTP ${status}`);
    throw new IngestError(`${where} answered HTTP ${status} ${res.statusMessage ?? ''}`.trim());
  }
}

/**
 * The body of `url`, after up to ATTEMPTS tries at getting its answer; at most `maxBytes` of
 * it, each wait for more bounded by the timeout. Failures are IngestErrors that say what
 * happened.
 */
export async function openUrl(url: URL, options: FetchOptions): Promise<AsyncIterable<Buffer>> {
  let res: IncomingMessage | undefined;
  for (let attempt = 1; !res; attempt++) {
    try {
      res = await follow(url, options);
    } catch (err) {
      if (!(err instanceof Transient)) throw err;
      if (attempt >= ATTEMPTS) throw new IngestError(`${err.message} (${ATTEMPTS} attempts)`);
      await sleep((options.backoffMs ?? 1000) * 2 ** (attempt - 1), undefined, { signal: options.signal }).catch(() =>
        options.signal!.throwIfAborted(),
      );
    }
  }
  const length = Number(res.headers['content-length']);
  if (Number.isFinite(length) && length > options.maxBytes) {
    res.destroy();
    throw new IngestError(`${url.origin}${url.pathname} is ${length} bytes, more than MAX_UPLOAD_BYTES (${options.maxBytes})`);
  }
  return limited(res, url, options);
}

async function* limited(res: IncomingMessage, url: URL, options: FetchOptions): AsyncGenerator<Buffer> {
  res.setTimeout(options.timeoutMs, () =>
    res.destroy(new Transient(`${url.host} sent nothing for ${options.timeoutMs} ms (IMPORT_TIMEOUT_MS)`)),
  );
  const { signal } = options;
  const abort = () => res.destroy(signal!.reason as Error);
  signal?.addEventListener('abort', abort, { once: true });
  let total = 0;
  try {
    signal?.throwIfAborted();
    for await (const chunk of res as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > options.maxBytes)
        throw new IngestError(`${url.origin}${url.pathname} is more than MAX_UPLOAD_BYTES (${options.maxBytes} bytes)`);
      yield chunk;
    }
  } catch (err) {
    signal?.throwIfAborted();
    if (err instanceof IngestError) throw err;
    throw new IngestError(`the download of ${url.origin}${url.pathname} broke off after ${total} bytes: ${(err as Error).message}`);
  } finally {
    signal?.removeEventListener('abort', abort);
    res.destroy();
  }
}

/**
 * One GET of a small answer (an API's JSON), with the same address rule and timeout as an
 * import, no redirects and no retries: the status and at most `maxBytes` of text. Network
 * failures are IngestErrors saying what happened.
 */
export async function getText(
  url: URL,
  options: Pick<FetchOptions, 'allowed' | 'timeoutMs' | 'signal'>,
  headers: Record<string, string>,
  maxBytes = 1024 ** 2,
): Promise<{ status: number; text: string; retryAfter?: string }> {
  let res: IncomingMessage;
  try {
    res = await get(url, options, headers);
  } catch (err) {
    throw err instanceof Transient ? new Unreachable(err.message) : err;
  }
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of limited(res, url, { ...options, maxBytes })) chunks.push(chunk);
  } catch (err) {
    options.signal?.throwIfAborted();
    throw err instanceof IngestError ? err : new IngestError((err as Error).message);
  }
  const retryAfter = res.headers['retry-after'];
  return { status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), ...(retryAfter !== undefined && { retryAfter }) };
}
