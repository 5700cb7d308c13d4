import { useState } from 'preact/hooks';
import { api, ApiError, type SqlResult } from '../api.js';
import { formatCount } from '../format.js';
import { navigate } from '../router.js';
import { Choice, Notice, ValueCell } from '../ui.js';

const SAVE_MODES = [
  ['replace', 'replace its rows'],
  ['append', 'append to it'],
] as const;
const NUMERIC_TYPES = new Set(['smallint', 'integer', 'bigint', 'numeric', 'real', 'double precision']);

/** A file the API answered, handed to the browser to save. */
export async function saveAnswer(answer: Promise<Response>, fileName: string): Promise<void> {
  const blob = await (await answer).blob();
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = fileName;
  link.click();
  window.setTimeout(() => URL.revokeObjectURL(url), 60_000); // once the browser has taken it
}

/** What a failed query tells its user: refused before it ran, failed as it ran, or not reached. */
function queryError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof ApiError && err.code === 'sql_refused') return `The query was refused: ${message}`;
  if (err instanceof ApiError && err.status === 422) return `The query failed: ${message}`;
  return `Could not run the query: ${message}`;
}

/**
 * The query page (`/query?sql=…`): one read-only SELECT over the datasets, its first rows as a
 * table in the query's column order, its whole result downloaded as CSV or NDJSON (streamed by
 * POST /api/sql/export), or saved as a dataset (a job: POST /api/sql with into).
 */
export function QueryPage({ query }: { query: URLSearchParams }) {
  const [text, setText] = useState(query.get('sql') ?? '');
  const [running, setRunning] = useState(false);
  const [result, setResult] = useState<{ answer: SqlResult; ms: number; sql: string } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [into, setInto] = useState('');
  const [mode, setMode] = useState<'replace' | 'append'>('replace');

  async function run(): Promise<void> {
    if (text.trim() === '' || running) return;
    setRunning(true);
    setError(null);
    // The query in the address: a reload or a shared link runs the same one.
    history.replaceState(null, '', `/query?${new URLSearchParams({ sql: text })}`);
    const started = performance.now();
    try {
      const answer = await api.sql(text);
      setResult({ answer, ms: performance.now() - started, sql: text });
    } catch (err) {
      setResult(null);
      setError(queryError(err));
    } finally {
      setRunning(false);
    }
  }

  async function download(format: 'csv' | 'ndjson'): Promise<void> {
    setError(null);
    setBusy(format);
    try {
      await saveAnswer(api.exportSql(text, format), `query.${format}`);
    } catch (err) {
      setError(queryError(err));
    } finally {
      setBusy(null);
    }
  }

  async function save(): Promise<void> {
    if (into.trim() === '') return;
    setError(null);
    setBusy('save');
    try {
      const job = await api.saveSql(text, into.trim(), mode);
      navigate(`/jobs/${job.job_id}`);
    } catch (err) {
      setError(
        err instanceof ApiError && err.code.startsWith('sql_')
          ? queryError(err)
          : `Could not save the result: ${String((err as Error).message)}`,
      );
    } finally {
      setBusy(null);
    }
  }

  const rows = result?.answer.rows ?? [];
  const empty = text.trim() === '';
  return (
    <>
      <section class="panel" aria-labelledby="query-title">
        <h1 id="query-title">Query</h1>
        <form
          class="sql-form"
          onSubmit={(event) => {
            event.preventDefault();
            void run();
          }}
        >
          <label for="sql-text">SQL</label>
          <textarea
            id="sql-text"
            rows={6}
            spellcheck={false}
            placeholder="SELECT region, count(*) FROM orders GROUP BY region"
            value={text}
            aria-describedby="sql-help"
            onInput={(event) => setText(event.currentTarget.value)}
            onKeyDown={(event) => {
              if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
                event.preventDefault();
                void run();
              }
            }}
          />
          <p id="sql-help" class="help muted">
            One read-only SELECT over the datasets, each a table by its name. Ctrl+Enter runs it. The table shows the first rows; a download
            or a saved dataset holds the whole result.
          </p>
          <div class="actions">
            <button type="submit" class="button primary" disabled={running || empty}>
              {running ? 'Running…' : 'Run query'}
            </button>
            <button type="button" class="button" disabled={empty || busy !== null} onClick={() => void download('csv')}>
              {busy === 'csv' ? 'Downloading…' : 'Download CSV'}
            </button>
            <button type="button" class="button" disabled={empty || busy !== null} onClick={() => void download('ndjson')}>
              {busy === 'ndjson' ? 'Downloading…' : 'Download NDJSON'}
            </button>
          </div>
        </form>
        <form
          class="save-form"
          onSubmit={(event) => {
            event.preventDefault();
            void save();
          }}
        >
          <label class="field">
            Save the result as dataset
            <input
              name="into"
              value={into}
              placeholder="orders_by_region"
              autoComplete="off"
              onInput={(event) => setInto(event.currentTarget.value)}
            />
          </label>
          <Choice label="Mode" name="mode" value={mode} options={SAVE_MODES} set={(value) => setMode(value as 'replace' | 'append')} />
          <button type="submit" class="button" disabled={empty || into.trim() === '' || busy !== null}>
            {busy === 'save' ? 'Saving…' : 'Save as dataset'}
          </button>
        </form>
        <p class="help muted">
          Saving runs the query as a job that writes the dataset atomically; a schedule can refresh it (POST /api/schedules with
          source=sql).
        </p>
        {error && <Notice kind="error">{error}</Notice>}
      </section>
      {result && (
        <section class="panel" aria-labelledby="result-title">
          <h2 id="result-title">Result</h2>
          <p class="muted sql-count" role="status">
            {rows.length === 0 ? 'No rows' : `${formatCount(rows.length)} ${rows.length === 1 ? 'row' : 'rows'}`}
            {result.answer.truncated ? ' (the query found more: only these are shown; download to get them all)' : ''} in{' '}
            {Math.round(result.ms).toLocaleString('en-US')} ms.
          </p>
          {result.answer.columns.length > 0 && rows.length > 0 && (
            <div class="table-wrap">
              <table class="records sql-rows">
                <thead>
                  <tr>
                    {result.answer.columns.map((column, i) => (
                      <th scope="col" class={NUMERIC_TYPES.has(column.type) ? 'num' : undefined} title={column.type} key={i}>
                        {column.name}
                      </th>
                    ))}
                  </tr>
                </thead>
                <tbody>
                  {rows.map((row, r) => (
                    <tr key={r}>
                      {row.map((value, i) => (
                        <ValueCell value={value} numeric={NUMERIC_TYPES.has(result.answer.columns[i]?.type ?? '')} key={i} />
                      ))}
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </section>
      )}
    </>
  );
}
