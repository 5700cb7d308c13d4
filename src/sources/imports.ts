/**
 * Imports by reference: a job that reads an https:// (or http://) URL or an s3://bucket/key
 * object itself, in the worker, each time it runs. The API only checks and records the URL.
 */
import type { Config } from '../config.js';
import type { SourceType } from '../core/job.js';
import { IngestError } from '../core/errors.js';
import { checkImportUrl, isPublicAddress, openUrl } from '../net/fetch.js';
import { shownFileName } from '../formats/file-name.js';
import type { Input } from '../formats/parse.js';
import type { SqlSettings } from '../storage/sql-query.js';
import type { SqlRole } from '../storage/sql-role.js';

/** A URL's path percent-decoded, or as written when its escapes are not valid UTF-8 (%zz). */
function decoded(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

export interface ImportSettings {
  allowPrivate: boolean;
  timeoutMs: number;
  maxBytes: number;
  s3: Config['s3'];
  scratchDir: string;
  /** Opens connections' secrets (a Jira pull). */
  secretKey: Buffer | undefined;
  /** How a derived dataset's query runs (source=sql). */
  sql: SqlSettings;
}

export const importSettings = (config: Config, sqlRole: SqlRole): ImportSettings => ({
  allowPrivate: config.importAllowPrivate,
  timeoutMs: config.importTimeoutMs,
  maxBytes: config.maxUploadBytes,
  s3: config.s3,
  scratchDir: config.uploadDir,
  secretKey: config.secretKey,
  sql: { schema: config.datasetSchema, role: sqlRole, limits: config.sql },
});

export interface ImportSource {
  sourceType: Extract<SourceType, 'url_import' | 's3_import'>;
  url: URL;
  /** What the job shows as its file name: the URL without its query (which may hold a signature). */
  fileName: string;
  /** The last segment of the path, which names the format and the dataset. */
  baseName: string;
}

/** An import's URL checked (scheme, form, an address host); throws IngestError saying what is wrong. */
export function importSource(raw: string, settings: Pick<ImportSettings, 'allowPrivate'>): ImportSource {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new IngestError('url is not a URL: give https://…, http://… or s3://bucket/key');
  }
  if (url.username || url.password)
    throw new IngestError('url may not hold credentials (user:password@): S3 credentials come from the environment');
  const baseName = decoded(url.pathname.split('/').filter(Boolean).at(-1) ?? '').slice(0, 200);
  if (url.protocol === 's3:') {
    if (!url.hostname || url.pathname.length <= 1)
      throw new IngestError('an s3 URL names a bucket and a key: s3://bucket/path/to/file.csv');
    return { sourceType: 's3_import', url, fileName: shownFileName(`s3://${url.hostname}${decoded(url.pathname)}`), baseName };
  }
  checkImportUrl(url, { allowed: settings.allowPrivate ? () => true : isPublicAddress });
  return { sourceType: 'url_import', url, fileName: shownFileName(`${url.origin}${decoded(url.pathname)}`), baseName };
}

// One client for every s3:// import made with the same settings (a process has one set; tests start several).
const clients = new WeakMap<ImportSettings, import('@aws-sdk/client-s3').S3Client>();

/** The bytes an import reads, fetched when the job opens them. */
export async function importInput(raw: string, settings: ImportSettings): Promise<Input> {
  const url = new URL(raw);
  if (url.protocol === 's3:') {
    const { objectInput, s3Client } = await import('./s3.js');
    let client = clients.get(settings);
    if (!client) clients.set(settings, (client = s3Client(settings.s3, settings.timeoutMs)));
    return objectInput(client, url.hostname, decoded(url.pathname.slice(1)), settings.scratchDir);
  }
  return {
    scratchDir: settings.scratchDir,
    open: (signal) =>
      openUrl(url, {
        allowed: settings.allowPrivate ? () => true : isPublicAddress,
        timeoutMs: settings.timeoutMs,
        maxBytes: settings.maxBytes,
        signal,
      }),
  };
}
