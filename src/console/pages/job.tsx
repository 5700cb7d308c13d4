import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, jobPath, TERMINAL, type Job, type RecordRow, type RowError } from '../api.js';
import { formatBytes, formatCount, formatDuration, formatTime } from '../format.js';
import { followJob, type LiveState } from '../live.js';
import { navigate } from '../router.js';
import { Choice, Link, Notice, optionsOf, ProgressBar, StatusBadge, ValueCell } from '../ui.js';
import { ENCODINGS } from '../../core/job.js';

const PREVIEW_ROWS = 50;
const PREVIEW_COLUMNS = 12;
const ROWS_REFRESH_MS = 2000; // while running, the previews are re-read at most this often

/** Of two payloads of one job, the newer (by version): a page never shows an older one over a newer one. */
const newer = (current: Job | null, next: Job): Job => (current && current.version >= next.version ? current : next);

export function JobPage({ jobId }: { jobId: string }) {
  const [job, setJob] = useState<Job | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [live, setLive] = useState<LiveState>('connecting');
  const [now, setNow] = useState(Date.now());
  const [run, setRun] = useState(0); // a retry follows the job anew
  const [actionError, setActionError] = useState<string | null>(null);

  async function act(action: 'cancel' | 'retry' | 'delete'): Promise<void> {
    if (action === 'delete' && !window.confirm('Delete this job, its records, its row errors and its stored upload?')) return;
    setActionError(null);
    try {
      if (action === 'delete') {
        await api.remove(jobId);
        return navigate('/');
      }
      const answered = await (action === 'cancel' ? api.cancel(jobId) : api.retry(jobId));
      setJob((current) => newer(current, answered));
      if (action === 'retry') setRun((n) => n + 1);
    } catch (err) {
      setActionError(err instanceof Error ? err.message : String(err));
    }
  }

  useEffect(() => {
    setError(null);
    return followJob(
      jobId,
      (next) => {
        setJob((current) => newer(current, next));
        setError(null);
      },
      setLive,
      (err) => setError(err instanceof ApiError ? err : new ApiError(0, 'network', err.message)),
    );
  }, [jobId, run]);

  // The running time ticks while the job is unfinished.
  const finished = job !== null && TERMINAL.has(job.status);
  useEffect(() => {
    if (finished) return;
    const timer = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(timer);
  }, [finished]);

  if (error?.status === 404) {
    return (
      <section class="panel">
        <p>
          <Link href="/">← All jobs</Link>
        </p>
        <Notice kind="error">There is no job {jobId}. It may have been deleted, or the link is wrong.</Notice>
      </section>
    );
  }
  if (!job) {
    return (
      <section class="panel">
        <p>
          <Link href="/">← All jobs</Link>
        </p>
        {error ? <Notice kind="error">Could not load the job: {error.message}. Trying again…</Notice> : <p class="empty">Loading…</p>}
      </section>
    );
  }

  const statusUrl = `${location.origin}${jobPath(job.job_id)}`;
  return (
    <>
      <section class="panel" aria-labelledby="job-title">
        <p>
          <Link href="/">← All jobs</Link>
        </p>
        <div class="job-head">
          <h2 id="job-title">{job.file_name ?? 'Records posted to /api/ingest/json'}</h2>
          <StatusBadge status={job.status} />
          {job.phase && (
            <span class="muted" data-testid="job-phase">
              {job.phase === 'publishing' ? 'publishing its rows into the dataset' : 'reading its input'}
            </span>
          )}
          <span class={`live-indicator${live === 'live' ? ' on' : ''}`} role="status">
            {live === 'live' ? 'Live' : live === 'polling' ? 'Reconnecting… (polling)' : live === 'connecting' ? 'Connecting…' : ''}
          </span>
        </div>
        {error && <Notice kind="error">Could not refresh the job: {error.message}. Trying again…</Notice>}
        <p class="status-url-line">
          Status URL: <a href={statusUrl}>{statusUrl}</a>
        </p>
        <ProgressBar job={job} label="Progress" />
        <p class="progress-text">
          {job.bytes_total
            ? `${formatBytes(job.bytes_processed)} of ${formatBytes(job.bytes_total)} read (${Math.floor((job.bytes_processed / job.bytes_total) * 100)}%)`
            : 'Size unknown'}
        </p>
        <dl class="stats">
          <div>
            <dt>{job.status === 'completed' ? 'Records loaded' : 'Records read'}</dt>
            <dd data-testid="records-processed">{formatCount(job.records_processed)}</dd>
          </div>
          <div>
            <dt>Rows failed</dt>
            <dd data-testid="records-failed" class={job.records_failed > 0 ? 'warn' : ''}>
              {formatCount(job.records_failed)}
              <span class="muted"> of {formatCount(job.max_errors)} allowed</span>
            </dd>
          </div>
          <div>
            <dt>Source</dt>
            <dd>{job.source_type}</dd>
          </div>
          {job.dataset && (
            <div>
              <dt>Dataset</dt>
              <dd data-testid="job-dataset">
                <Link href={`/datasets/${job.dataset}`}>{job.dataset}</Link>
              </dd>
            </div>
          )}
          {job.mode && (
            <div>
              <dt>Mode</dt>
              <dd data-testid="job-mode">
                {job.mode}
                {job.key && job.key.length > 0 && <span class="muted"> on {job.key.join(', ')}</span>}
              </dd>
            </div>
          )}
          {job.rows_inserted !== null && (
            <div>
              <dt>Rows inserted</dt>
              <dd data-testid="rows-inserted">{formatCount(job.rows_inserted)}</dd>
            </div>
          )}
          {job.rows_updated !== null && (
            <div>
              <dt>Rows updated</dt>
              <dd data-testid="rows-updated">{formatCount(job.rows_updated)}</dd>
            </div>
          )}
          <div>
            <dt>Job id</dt>
            <dd>
              <code>{job.job_id}</code>
            </dd>
          </div>
        </dl>
        <Timeline job={job} now={now} />
        <div class="actions">
          {!TERMINAL.has(job.status) && (
            <button type="button" class="button" onClick={() => void act('cancel')}>
              Cancel job
            </button>
          )}
          <button type="button" class="button danger" onClick={() => void act('delete')}>
            Delete
          </button>
        </div>
        {actionError && <Notice kind="error">{actionError}</Notice>}
        {job.error && (
          <div class="job-error" role="alert">
            <h3>Error</h3>
            <pre data-testid="job-error">{job.error}</pre>
          </div>
        )}
        {(job.status === 'failed' || job.status === 'canceled') && (
          <RetryForm
            job={job}
            retry={async (maxErrors, encoding) => {
              setActionError(null);
              try {
                const answered = await api.retry(job.job_id, maxErrors, encoding);
                setJob((current) => newer(current, answered));
                setRun((n) => n + 1);
              } catch (err) {
                setActionError(err instanceof Error ? err.message : String(err));
              }
            }}
          />
        )}
      </section>
      {/* A retry starts from a clean slate: the previews start over too. */}
      <RowErrors job={job} key={`errors-${run}`} />
      <RecordsPreview job={job} key={`records-${run}`} />
    </>
  );
}

function Timeline({ job, now }: { job: Job; now: number }) {
  const submitted = Date.parse(job.submitted_at);
  const started = job.started_at ? Date.parse(job.started_at) : null;
  const ended = job.completed_at ? Date.parse(job.completed_at) : null;
  return (
    <ol class="timeline" aria-label="Timeline">
      <li class="done">
        <span class="step">Submitted</span> <time dateTime={job.submitted_at}>{formatTime(job.submitted_at)}</time>
      </li>
      <li class={started ? 'done' : 'waiting'}>
        <span class="step">Started</span>{' '}
        {started ? (
          <>
            <time dateTime={job.started_at!}>{formatTime(job.started_at!)}</time>
            <span class="muted"> after {formatDuration(started - submitted)} in the queue</span>
          </>
        ) : (
          <span class="muted">waiting for a worker ({formatDuration(now - submitted)} so far)</span>
        )}
      </li>
      <li class={ended ? 'done' : 'waiting'}>
        <span class="step">{job.status === 'failed' ? 'Failed' : job.status === 'canceled' ? 'Canceled' : 'Completed'}</span>{' '}
        {ended ? (
          <>
            <time dateTime={job.completed_at!}>{formatTime(job.completed_at!)}</time>
            <span class="muted">
              {' '}
              after {formatDuration(ended - (started ?? submitted))} running · {formatDuration(ended - submitted)} in all
            </span>
          </>
        ) : started ? (
          <span class="muted">running for {formatDuration(now - started)}</span>
        ) : (
          <span class="muted">—</span>
        )}
      </li>
    </ol>
  );
}

/**
 * One keyset-paginated list (records or row errors): the first page, re-read as the job
 * moves while it is short, and "Show more" for the next pages.
 */
function usePaged<T>(job: Job, kind: 'records' | 'errors', count: number) {
  const [rows, setRows] = useState<T[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loadedAt, setLoadedAt] = useState({ version: 0, time: 0 });

  // The first page is read at once, and again while the job moves on and the page is not
  // full yet (at most every ROWS_REFRESH_MS while running, and once more when it ends).
  const firstLoad = loadedAt.version === 0;
  const moved = job.version > loadedAt.version && rows.length < PREVIEW_ROWS && count > rows.length;
  const due = TERMINAL.has(job.status) || Date.now() - loadedAt.time >= ROWS_REFRESH_MS;
  const reload = firstLoad || (moved && due);
  useEffect(() => {
    if (!reload) return;
    const controller = new AbortController();
    api.page<T>(job.job_id, kind, PREVIEW_ROWS, null, controller.signal).then(
      (page) => {
        setRows(page.results);
        setNext(page.next_cursor);
        setError(null);
        setLoadedAt({ version: job.version, time: Date.now() });
      },
      (err: Error) => err.name !== 'AbortError' && setError(err.message),
    );
    return () => controller.abort();
    // A job that ends while a page is on its way is read once more: the page may predate the end.
  }, [job.job_id, reload, TERMINAL.has(job.status)]);

  function more(): void {
    if (!next) return;
    api.page<T>(job.job_id, kind, PREVIEW_ROWS, next).then(
      (page) => {
        setRows((current) => [...current, ...page.results]);
        setNext(page.next_cursor);
      },
      (err: Error) => setError(err.message),
    );
  }
  return { rows, next, error, more };
}

function RowErrors({ job }: { job: Job }) {
  const { rows, next, error, more } = usePaged<RowError>(job, 'errors', job.records_failed);
  if (job.records_failed === 0 && rows.length === 0) return null;
  return (
    <section class="panel" aria-labelledby="errors-title">
      <h2 id="errors-title">Row errors ({formatCount(job.records_failed)})</h2>
      {error && <Notice kind="error">Could not load the row errors: {error}</Notice>}
      <div class="table-wrap">
        <table class="row-errors">
          <thead>
            <tr>
              <th scope="col" class="num">
                Line
              </th>
              <th scope="col" class="num">
                Record
              </th>
              <th scope="col">Problem</th>
              <th scope="col">Row</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((row) => (
              <tr key={row.record_no}>
                <td class="num">{row.line}</td>
                <td class="num">{row.record_no}</td>
                <td>{row.message}</td>
                <td>
                  <code class="excerpt">{row.excerpt}</code>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {next && (
        <button type="button" class="button" onClick={more}>
          Show more errors
        </button>
      )}
    </section>
  );
}

function RecordsPreview({ job }: { job: Job }) {
  const { rows, next, error, more } = usePaged<RecordRow>(job, 'records', job.records_processed);
  const columns: string[] = [];
  for (const row of rows) for (const key of Object.keys(row.data)) if (!columns.includes(key)) columns.push(key);
  const shown = columns.slice(0, PREVIEW_COLUMNS);
  return (
    <section class="panel" aria-labelledby="records-title">
      <h2 id="records-title">{job.status === 'completed' ? `Records (${formatCount(job.records_processed)})` : 'Records'}</h2>
      {error && <Notice kind="error">Could not load the records: {error}</Notice>}
      {rows.length === 0 ? (
        <p class="empty" data-testid="records-empty">
          {job.status === 'completed'
            ? 'No records were ingested.'
            : TERMINAL.has(job.status)
              ? `None of its records reached ${job.dataset ? `dataset ${job.dataset}` : 'its dataset'}: a ${job.status} job leaves it as it was.`
              : 'Its records appear here when it completes: they reach its dataset all at once.'}
        </p>
      ) : (
        <>
          <div class="table-wrap">
            <table class="records">
              <thead>
                <tr>
                  <th scope="col" class="num">
                    #
                  </th>
                  {shown.map((column) => (
                    <th scope="col" key={column}>
                      {column}
                    </th>
                  ))}
                </tr>
              </thead>
              <tbody>
                {rows.map((row) => (
                  <tr key={row.record_no}>
                    <td class="num muted">{row.record_no}</td>
                    {shown.map((column) => (
                      <ValueCell value={row.data[column]} key={column} />
                    ))}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {columns.length > shown.length && <p class="muted">{columns.length - shown.length} more columns not shown.</p>}
          {next && (
            <button type="button" class="button" onClick={more}>
              Show more records
            </button>
          )}
        </>
      )}
    </section>
  );
}

/**
 * Retry of a failed or canceled job, with what a retry may change: the encoding its file is
 * read in (filled in when the error names one to try) and the bad rows it may skip.
 */
function RetryForm({ job, retry }: { job: Job; retry: (maxErrors: string | undefined, encoding: string | undefined) => Promise<void> }) {
  const suggested = /retry with encoding=([\w-]+)/.exec(job.error ?? '')?.[1] ?? '';
  const [encoding, setEncoding] = useState(suggested);
  const [maxErrors, setMaxErrors] = useState(String(job.max_errors));
  const [busy, setBusy] = useState(false);
  const file = job.source_type === 'csv_upload' || job.source_type === 'url_import' || job.source_type === 's3_import';
  return (
    <form
      class="retry-form"
      onSubmit={(event) => {
        event.preventDefault();
        setBusy(true);
        void retry(maxErrors === String(job.max_errors) ? undefined : maxErrors, encoding || undefined).finally(() => setBusy(false));
      }}
    >
      {file && (
        <Choice label="Encoding" name="encoding" value={encoding} options={optionsOf(ENCODINGS, ['', 'as before'])} set={setEncoding} />
      )}
      <label class="field">
        Bad rows to skip
        <input
          name="max_errors"
          type="number"
          min={0}
          value={maxErrors}
          size={6}
          onInput={(event) => setMaxErrors(event.currentTarget.value)}
        />
      </label>
      <button type="submit" class="button" disabled={busy}>
        {encoding ? `Retry with encoding ${encoding}` : 'Retry'}
      </button>
    </form>
  );
}
