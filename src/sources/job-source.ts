import { IngestError } from '../core/errors.js';
import type { Db } from '../storage/db.js';
import { sqlSource } from './sql.js';
import type { JobRow } from '../storage/jobs.js';
import { importInput, type ImportSettings } from './imports.js';
import { jiraSource } from './jira.js';
import type { Source } from './source.js';
import type { UploadStore } from './uploads.js';

export interface SourceDeps {
  db: Db;
  uploads: UploadStore;
  imports: ImportSettings;
}

/** Where the job reads from: a Jira pull, a query of the datasets, an import, or its stored upload. Throws IngestError when the upload is gone. */
export async function sourceFor(job: JobRow, deps: SourceDeps): Promise<Source> {
  const jira = job.source?.jira;
  if (jira) return jiraSource(deps.db, deps.imports, jira, job.dataset ?? '');
  const sql = job.source?.sql;
  if (sql?.query) return sqlSource(deps.db, deps.imports, sql.query);
  if (job.source_url) return importInput(job.source_url, deps.imports);
  const upload = await deps.uploads.input(job.job_id);
  if (!upload)
    throw new IngestError(
      `the stored upload is missing (was ${deps.uploads.kind === 'file' ? 'UPLOAD_DIR' : 'UPLOAD_STORE'} changed or cleaned?)`,
    );
  return upload;
}
