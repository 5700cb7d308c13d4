import { useEffect, useRef, useState } from 'preact/hooks';
import { JOB_STATUSES, type JobStatus } from '../../core/job.js';
import { api, type Job, type JobList } from '../api.js';
import { formatCount, formatDuration, formatTime } from '../format.js';
import { followAllJobs } from '../live.js';
import { navigate } from '../router.js';
import { Upload } from '../upload.js';
import { Link, Notice, ProgressBar, StatusBadge } from '../ui.js';

const PAGE_SIZE = 20;
const POLL_MS = 3000; // while the live stream is down
const REFRESH_MS = 500; // at most two list reloads a second, however busy

/** A page of the list: its cursor (none for the newest) and the position of its first row (1-based), for display. */
interface Position {
  cursor: string | null;
  start: number;
}

interface Filter {
  status?: JobStatus;
  dataset?: string;
}

function listUrl({ status, dataset }: Filter, at: Position = { cursor: null, start: 1 }): string {
  const params = new URLSearchParams();
  if (status) params.set('status', status);
  if (dataset) params.set('dataset', dataset);
  if (at.cursor) {
    params.set('cursor', at.cursor);
    params.set('start', String(at.start));
  }
  const query = params.toString();
  return query ? `/?${query}` : '/';
}

// The page before each page reached with "Older": "Newer" goes back to it. A page opened
// directly (a link, a reload) has none: "Newer" goes to the newest page.
const newerPage = new Map<string, Position>();

export function JobsPage({ query }: { query: URLSearchParams }) {
  const statusParam = query.get('status');
  const status = (JOB_STATUSES as readonly string[]).includes(statusParam ?? '') ? (statusParam as JobStatus) : undefined;
  const dataset = query.get('dataset') || undefined;
  const filter = { status, dataset };
  const [datasetText, setDatasetText] = useState(dataset ?? '');
  const [datasetNames, setDatasetNames] = useState<string[]>([]);
  const cursor = query.get('cursor') || null;
  const start = cursor ? Math.max(1, Number.parseInt(query.get('start') ?? '1', 10) || 1) : 1;

  const [list, setList] = useState<JobList | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [live, setLive] = useState(true);
  const reload = useRef<() => void>(() => {});

  // Loads the page; reload.current() schedules another load, at most one per REFRESH_MS.
  useEffect(() => {
    let controller = new AbortController();
    let timer: number | undefined;
    let lastLoad = 0;
    const load = () => {
      controller.abort();
      controller = new AbortController();
      lastLoad = Date.now();
      api.jobs({ status, dataset, cursor, limit: PAGE_SIZE }, controller.signal).then(
        (page) => {
          // A page read before a live event can arrive after it: never show a job older than shown.
          setList((current) => {
            const shown = new Map(current?.results.map((job) => [job.job_id, job]));
            const results = page.results.map((job) => {
              const newer = shown.get(job.job_id);
              return newer && newer.version > job.version ? newer : job;
            });
            return { ...page, results };
          });
          setError(null);
        },
        (err: Error) => {
          if (err.name !== 'AbortError') setError(err.message);
        },
      );
    };
    reload.current = () => {
      if (timer !== undefined) return;
      timer = window.setTimeout(
        () => {
          timer = undefined;
          load();
        },
        Math.max(0, lastLoad + REFRESH_MS - Date.now()),
      );
    };
    load();
    return () => {
      controller.abort();
      window.clearTimeout(timer);
    };
  }, [status, dataset, cursor]);

  // The datasets, offered by the filter.
  useEffect(() => {
    const controller = new AbortController();
    api.datasets({ limit: 100 }, controller.signal).then(
      (page) => setDatasetNames(page.results.map((row) => row.name)),
      () => {}, // the filter still takes a typed name
    );
    return () => controller.abort();
  }, []);

  // Live: progress updates the row in place; a new job or a transition reloads the page
  // (it may enter or leave the filter or the page).
  useEffect(
    () =>
      followAllJobs(
        (job, kind) => {
          setList((current) => {
            if (!current) return current;
            const index = current.results.findIndex((row) => row.job_id === job.job_id);
            if (index < 0 || current.results[index]!.version >= job.version) return current;
            const results = current.results.slice();
            results[index] = job;
            return { ...current, results };
          });
          if (kind === 'status') reload.current();
        },
        (isLive) => {
          setLive(isLive);
          if (isLive) reload.current(); // what changed while it was down
        },
      ),
    [],
  );

  // Polls while the stream is down.
  useEffect(() => {
    if (live) return;
    const timer = window.setInterval(() => reload.current(), POLL_MS);
    return () => window.clearInterval(timer);
  }, [live]);

  return (
    <>
      <Upload />
      <section class="panel" aria-labelledby="jobs-title">
        <div class="panel-head">
          <h2 id="jobs-title">Jobs</h2>
          <span class={`live-indicator${live ? ' on' : ''}`} role="status">
            {live ? 'Live' : 'Reconnecting… (polling)'}
          </span>
          <label class="field inline">
            Status
            <select
              value={status ?? ''}
              onChange={(event) =>
                navigate(listUrl({ dataset, status: (event.currentTarget.value || undefined) as JobStatus | undefined }))
              }
            >
              <option value="">All</option>
              {JOB_STATUSES.map((value) => (
                <option value={value} key={value}>
                  {value}
                </option>
              ))}
            </select>
          </label>
          <form
            class="field inline"
            role="search"
            onSubmit={(event) => {
              event.preventDefault();
              navigate(listUrl({ status, dataset: datasetText.trim() || undefined }));
            }}
          >
            <label class="field inline">
              Jobs of dataset
              <input
                name="dataset"
                list="dataset-names"
                value={datasetText}
                placeholder="all"
                size={14}
                onInput={(event) => setDatasetText(event.currentTarget.value)}
                onChange={(event) => navigate(listUrl({ status, dataset: event.currentTarget.value.trim() || undefined }))}
              />
            </label>
            <datalist id="dataset-names">
              {datasetNames.map((name) => (
                <option value={name} key={name} />
              ))}
            </datalist>
          </form>
        </div>
        {error && (
          <Notice kind="error">
            Could not load the jobs: {error}. {live ? '' : 'Trying again…'}
          </Notice>
        )}
        {list && list.results.length === 0 && (
          <p class="empty">
            {cursor !== null
              ? 'No more jobs on this page.'
              : status || dataset
                ? `No ${status ? `${status} ` : ''}jobs${dataset ? ` of dataset ${dataset}` : ''}.`
                : 'No jobs yet. Upload a CSV, JSON, NDJSON or Excel file above, import one from a URL, S3 or Jira, save a query as a dataset on the Query page, or post records to /api/ingest/json: each job appears here.'}
          </p>
        )}
        {!list && !error && <p class="empty">Loading…</p>}
        {list && list.results.length > 0 && <JobTable jobs={list.results} />}
        {list && (cursor !== null || list.next_cursor !== null) && (
          <nav class="pager" aria-label="Pages">
            <button
              type="button"
              class="button"
              disabled={cursor === null}
              onClick={() => navigate(listUrl(filter, (cursor && newerPage.get(cursor)) || undefined))}
            >
              ← Newer
            </button>
            <span>
              {start}–{start + list.results.length - 1}
            </span>
            <button
              type="button"
              class="button"
              disabled={list.next_cursor === null}
              onClick={() => {
                if (list.next_cursor === null) return;
                newerPage.set(list.next_cursor, { cursor, start });
                navigate(listUrl(filter, { cursor: list.next_cursor, start: start + list.results.length }));
              }}
            >
              Older →
            </button>
          </nav>
        )}
      </section>
    </>
  );
}

/**
 * Jobs as rows, each linking to its page (also the dataset page's list of the jobs that loaded
 * it, and a schedule's runs, which show each failed run's error).
 */
export function JobTable({ jobs, errors = false }: { jobs: Job[]; errors?: boolean }) {
  return (
    <div class="table-wrap">
      <table class="jobs">
        <thead>
          <tr>
            <th scope="col">Status</th>
            <th scope="col">Source</th>
            <th scope="col">Dataset</th>
            <th scope="col" class="wide">
              Progress
            </th>
            <th scope="col" class="num">
              Records
            </th>
            <th scope="col" class="num">
              Failed
            </th>
            <th scope="col" class="wide">
              Submitted
            </th>
            <th scope="col" class="wide num">
              Took
            </th>
          </tr>
        </thead>
        <tbody>
          {jobs.map((job) => (
            <tr key={job.job_id} data-job-id={job.job_id}>
              <td>
                <StatusBadge status={job.status} />
                {job.phase === 'publishing' && <span class="muted phase">publishing</span>}
              </td>
              <td class="source">
                <Link href={`/jobs/${job.job_id}`}>{job.file_name ?? 'records via API'}</Link>
                <span class="muted">{job.source_type}</span>
                {errors && job.error && <span class="run-error">{job.error}</span>}
              </td>
              <td class="dataset">
                {job.dataset ? <Link href={`/datasets/${encodeURIComponent(job.dataset)}`}>{job.dataset}</Link> : '—'}
                {job.mode && <span class="muted">{job.mode === 'merge' && job.key ? `merge on ${job.key.join(', ')}` : job.mode}</span>}
              </td>
              <td class="wide">
                <ProgressBar job={job} label={`Progress of ${job.file_name ?? job.job_id}`} />
              </td>
              <td class="num">{formatCount(job.records_processed)}</td>
              <td class={`num${job.records_failed > 0 ? ' warn' : ''}`}>{formatCount(job.records_failed)}</td>
              <td class="wide">
                <time dateTime={job.submitted_at}>{formatTime(job.submitted_at)}</time>
              </td>
              <td class="wide num">
                {job.started_at && job.completed_at ? formatDuration(Date.parse(job.completed_at) - Date.parse(job.started_at)) : '—'}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
