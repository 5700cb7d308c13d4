import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, type Dataset } from '../api.js';
import { formatCount, formatTime } from '../format.js';
import { usePages } from '../paged.js';
import { navigate } from '../router.js';
import { Link, Notice, ValueCell } from '../ui.js';
import { JobTable } from './jobs.js';
import { saveAnswer } from './query.js';

/** A dataset's name as SQL reads it: quoted unless it is a plain lower-case name. */
const quotedName = (name: string) => (/^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replaceAll('"', '""')}"`);

const PREVIEW_ROWS = 50;
const JOBS_PAGE = 20;
const NUMERIC_TYPES = new Set(['bigint', 'numeric']);

// 'spreadsheet': CSV with formulas and control characters made inert (excel_safe=true).
type ExportFormat = 'csv' | 'ndjson' | 'spreadsheet';

export function DatasetPage({ name }: { name: string }) {
  const [dataset, setDataset] = useState<Dataset | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [exporting, setExporting] = useState<ExportFormat | null>(null);
  const [actionError, setActionError] = useState<string | null>(null);

  useEffect(() => {
    const controller = new AbortController();
    api.dataset(name, controller.signal).then(setDataset, (err: Error) => {
      if (err.name !== 'AbortError') setError(err instanceof ApiError ? err : new ApiError(0, 'network', err.message));
    });
    return () => controller.abort();
  }, [name]);

  // The export is read through the API (it may need the bearer token a plain link cannot send),
  // then handed to the browser as a file.
  async function download(format: ExportFormat): Promise<void> {
    setActionError(null);
    setExporting(format);
    try {
      await saveAnswer(
        api.exportDataset(name, format === 'ndjson' ? 'ndjson' : 'csv', undefined, format === 'spreadsheet'),
        `${name}.${format === 'ndjson' ? 'ndjson' : 'csv'}`,
      );
    } catch (err) {
      setActionError(`Could not export the dataset: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      setExporting(null);
    }
  }

  async function remove(): Promise<void> {
    if (!window.confirm(`Delete dataset ${name}: drop its table and every row in it?`)) return;
    setActionError(null);
    try {
      await api.removeDataset(name);
      navigate('/datasets');
    } catch (err) {
      setActionError(err instanceof Error ? err.message : String(err));
    }
  }

  if (!dataset) {
    return (
      <section class="panel">
        <p>
          <Link href="/datasets">← All datasets</Link>
        </p>
        {error?.status === 404 ? (
          <Notice kind="error">There is no dataset {name}: no job has loaded it yet, it has been deleted, or the link is wrong.</Notice>
        ) : error ? (
          <Notice kind="error">Could not load the dataset: {error.message}</Notice>
        ) : (
          <p class="empty">Loading…</p>
        )}
      </section>
    );
  }

  return (
    <>
      <section class="panel" aria-labelledby="dataset-title">
        <p>
          <Link href="/datasets">← All datasets</Link>
        </p>
        <div class="job-head">
          <h2 id="dataset-title">{dataset.name}</h2>
        </div>
        <dl class="stats">
          <div>
            <dt>Rows</dt>
            <dd data-testid="dataset-rows">{formatCount(dataset.row_count)}</dd>
          </div>
          <div>
            <dt>Columns</dt>
            <dd>{formatCount(dataset.columns.length)}</dd>
          </div>
          <div>
            <dt>Created</dt>
            <dd>
              <time dateTime={dataset.created_at}>{formatTime(dataset.created_at)}</time>
            </dd>
          </div>
          <div>
            <dt>Last loaded</dt>
            <dd>
              <time dateTime={dataset.updated_at}>{formatTime(dataset.updated_at)}</time>
              {dataset.last_job_id && (
                <span class="muted">
                  {' '}
                  by <Link href={`/jobs/${dataset.last_job_id}`}>its last job</Link>
                </span>
              )}
            </dd>
          </div>
        </dl>
        <div class="actions">
          <button type="button" class="button" disabled={exporting !== null} onClick={() => void download('csv')}>
            {exporting === 'csv' ? 'Exporting…' : 'Export CSV'}
          </button>
          <button
            type="button"
            class="button"
            disabled={exporting !== null}
            title="Values that a spreadsheet would run as formulas get a leading ', control characters are written out"
            onClick={() => void download('spreadsheet')}
          >
            {exporting === 'spreadsheet' ? 'Exporting…' : 'Export for a spreadsheet'}
          </button>
          <button type="button" class="button" disabled={exporting !== null} onClick={() => void download('ndjson')}>
            {exporting === 'ndjson' ? 'Exporting…' : 'Export NDJSON'}
          </button>
          <Link href={`/query?${new URLSearchParams({ sql: `SELECT * FROM ${quotedName(name)} LIMIT 100` })}`} class="button">
            Query it
          </Link>
          <button type="button" class="button danger" onClick={() => void remove()}>
            Delete dataset
          </button>
        </div>
        {actionError && <Notice kind="error">{actionError}</Notice>}
      </section>
      <Schema dataset={dataset} />
      <RowsPreview dataset={dataset} />
      <DatasetJobs name={name} />
    </>
  );
}

function Schema({ dataset }: { dataset: Dataset }) {
  return (
    <section class="panel" aria-labelledby="schema-title">
      <h2 id="schema-title">Columns</h2>
      <div class="table-wrap">
        <table class="schema">
          <thead>
            <tr>
              <th scope="col">Column</th>
              <th scope="col">Type</th>
              <th scope="col">Original name</th>
            </tr>
          </thead>
          <tbody>
            {dataset.columns.map((column) => (
              <tr key={column.name}>
                <td>
                  <code>{column.name}</code>
                </td>
                <td>{column.type}</td>
                <td>{column.original_name}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

interface TableColumn {
  name: string;
  numeric: boolean;
}

function RowsTable({ columns, rows, class: className }: { columns: TableColumn[]; rows: Record<string, unknown>[]; class: string }) {
  return (
    <div class="table-wrap">
      <table class={`records ${className}`}>
        <thead>
          <tr>
            {columns.map((column) => (
              <th scope="col" class={column.numeric ? 'num' : undefined} key={column.name}>
                {column.name}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((row, index) => (
            <tr key={index}>
              {columns.map((column) => (
                <ValueCell value={row[column.name]} numeric={column.numeric} key={column.name} />
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function RowsPreview({ dataset }: { dataset: Dataset }) {
  const { rows, next, error, loading, more } = usePages((cursor, signal) =>
    api.datasetRows(dataset.name, { limit: PREVIEW_ROWS, cursor }, signal),
  );
  const columns = dataset.columns.map((column) => ({ name: column.name, numeric: NUMERIC_TYPES.has(column.type) }));
  return (
    <section class="panel" aria-labelledby="rows-title">
      <h2 id="rows-title">Rows ({formatCount(dataset.row_count)})</h2>
      {error && <Notice kind="error">Could not load the rows: {error}</Notice>}
      {!rows && !error && <p class="empty">Loading…</p>}
      {rows && rows.length === 0 && <p class="empty">The dataset has no rows.</p>}
      {rows && rows.length > 0 && <RowsTable columns={columns} rows={rows} class="dataset-rows" />}
      {next && (
        <button type="button" class="button" disabled={loading} onClick={more}>
          Show more rows
        </button>
      )}
    </section>
  );
}

function DatasetJobs({ name }: { name: string }) {
  const {
    rows: jobs,
    next,
    error,
    loading,
    more,
  } = usePages((cursor, signal) => api.jobs({ dataset: name, limit: JOBS_PAGE, cursor }, signal));
  return (
    <section class="panel" aria-labelledby="dataset-jobs-title">
      <h2 id="dataset-jobs-title">Jobs that loaded it</h2>
      {error && <Notice kind="error">Could not load the jobs: {error}</Notice>}
      {!jobs && !error && <p class="empty">Loading…</p>}
      {jobs && jobs.length === 0 && <p class="empty">No job of this dataset is left: they have been deleted.</p>}
      {jobs && jobs.length > 0 && <JobTable jobs={jobs} />}
      {next && (
        <button type="button" class="button" disabled={loading} onClick={more}>
          Show more jobs
        </button>
      )}
    </section>
  );
}
