import { useState } from 'preact/hooks';
import {
  ApiError,
  editSchedule,
  getSchedule,
  listSchedules,
  pauseSchedule,
  removeSchedule,
  resumeSchedule,
  type Schedule,
  type ScheduleDetail,
  type ScheduleImport,
} from '../api.js';
import { formatCount, formatTime } from '../format.js';
import { usePolled } from '../polled.js';
import { navigate } from '../router.js';
import { Link, Notice, StatusBadge } from '../ui.js';
import { JobTable } from './jobs.js';

// Schedules have no event stream: their pages re-read them this often, so new runs show up.
const REFRESH_MS = 2500;
const EXAMPLE = JSON.stringify({ import: { url: 'https://example.com/orders.csv', dataset: 'orders' }, every: '15m' });

/** What a schedule imports: its URL, or the JQL of a Jira pull. */
function describeImport(request: ScheduleImport): string {
  return request.source === 'jira' ? `Jira: ${request.jql ?? ''}` : (request.url ?? '');
}

/** The dataset it loads: the one it names, else the one its runs loaded (a URL's file name), else Jira's default. */
function datasetOf(schedule: Schedule): string | null {
  if (typeof schedule.import.dataset === 'string') return schedule.import.dataset;
  if (schedule.last_run?.dataset) return schedule.last_run.dataset;
  return schedule.import.source === 'jira' ? 'jira_issues' : null;
}

function StateLabel({ schedule }: { schedule: Schedule }) {
  const state = schedule.paused ? 'paused' : 'active';
  return (
    <span class={`state state-${state}`} data-state={state}>
      {state}
    </span>
  );
}

function DatasetName({ schedule }: { schedule: Schedule }) {
  const dataset = datasetOf(schedule);
  return dataset ? <Link href={`/datasets/${dataset}`}>{dataset}</Link> : <span class="muted">named after the file</span>;
}

/**
 * Pause or Resume, and Delete (after a confirm). onDone gets the schedule as it is now, or null
 * once it is deleted; onError what went wrong (null when an action starts).
 */
function ScheduleActions({
  schedule,
  onDone,
  onError,
}: {
  schedule: Schedule;
  onDone: (schedule: Schedule | null) => void;
  onError: (message: string | null) => void;
}) {
  const [busy, setBusy] = useState(false);
  const id = schedule.schedule_id;

  async function run(action: 'pause' | 'resume' | 'delete'): Promise<void> {
    if (action === 'delete' && !window.confirm(`Delete the schedule of ${describeImport(schedule.import)}? The jobs it started stay.`))
      return;
    setBusy(true);
    onError(null);
    try {
      if (action === 'delete') {
        await removeSchedule(id);
        onDone(null);
      } else {
        onDone(await (action === 'pause' ? pauseSchedule(id) : resumeSchedule(id)));
      }
    } catch (err) {
      if (action === 'delete' && err instanceof ApiError && err.status === 404)
        onDone(null); // gone already
      else onError(`Could not ${action} the schedule: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      setBusy(false);
    }
  }

  return (
    <>
      {schedule.paused ? (
        <button type="button" class="button" disabled={busy} onClick={() => void run('resume')}>
          Resume
        </button>
      ) : (
        <button type="button" class="button" disabled={busy} onClick={() => void run('pause')}>
          Pause
        </button>
      )}
      <button type="button" class="button danger" disabled={busy} onClick={() => void run('delete')}>
        Delete
      </button>
    </>
  );
}

/**
 * A new interval for the schedule (PATCH): the next run becomes one new interval after the last
 * run, never before now. onDone gets the schedule as it is now.
 */
function IntervalForm({ schedule, onDone }: { schedule: Schedule; onDone: (schedule: Schedule) => void }) {
  const [every, setEvery] = useState(schedule.every);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState<Schedule | null>(null);
  const unchanged = every.trim().toLowerCase() === schedule.every;

  async function save(): Promise<void> {
    setBusy(true);
    setError(null);
    setSaved(null);
    try {
      const now = await editSchedule(schedule.schedule_id, every.trim());
      setEvery(now.every);
      setSaved(now);
      onDone(now);
    } catch (err) {
      setError(`The interval was not changed: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      setBusy(false);
    }
  }

  return (
    <div class="interval-edit">
      <form
        class="interval-form"
        onSubmit={(event) => {
          event.preventDefault();
          void save();
        }}
      >
        <label class="field">
          Run every
          <input
            name="every"
            value={every}
            placeholder="15m"
            autoComplete="off"
            aria-describedby="interval-help"
            aria-invalid={error ? 'true' : undefined}
            onInput={(event) => setEvery(event.currentTarget.value)}
          />
        </label>
        <button type="submit" class="button" disabled={busy || every.trim() === '' || unchanged}>
          {busy ? 'Saving…' : 'Change interval'}
        </button>
      </form>
      <p class="help muted" id="interval-help">
        A number and a unit (s, m, h, d), e.g. 30s, 15m, 1h30m; from 1s to 366d. The next run is one new interval after the last run (or
        from now, before the first), never earlier than now.
      </p>
      {error && <Notice kind="error">{error}</Notice>}
      {saved && !error && (
        <Notice kind="info">
          Runs every {saved.every} from now on
          {saved.next_run_at ? (
            <>
              ; next run <time dateTime={saved.next_run_at}>{formatTime(saved.next_run_at)}</time>.
            </>
          ) : (
            ' once it is resumed.'
          )}
        </Notice>
      )}
    </div>
  );
}

/** The schedules, oldest first: what each imports, how often, its state and its last run. */
export function SchedulesPage() {
  const { value: schedules, error, setValue, reload } = usePolled(listSchedules, REFRESH_MS);
  const [actionError, setActionError] = useState<string | null>(null);

  function changed(id: string, now: Schedule | null): void {
    setValue(
      (current) =>
        current && (now ? current.map((row) => (row.schedule_id === id ? now : row)) : current.filter((row) => row.schedule_id !== id)),
    );
    reload();
  }

  return (
    <section class="panel" aria-labelledby="schedules-title">
      <h2 id="schedules-title">Schedules</h2>
      {error && <Notice kind="error">Could not load the schedules: {error.message}. Trying again…</Notice>}
      {actionError && <Notice kind="error">{actionError}</Notice>}
      {!schedules && !error && <p class="empty">Loading…</p>}
      {schedules && schedules.length === 0 && (
        <div class="empty">
          <p>
            No schedules yet. A schedule runs an import every so often (a URL, an s3:// address, Jira, or a query that refreshes a derived
            dataset): fill in “Run every” in the <Link href="/">upload and import form</Link>, or create one with the API:
          </p>
          <code class="command">{`curl -X POST ${location.origin}/api/schedules -H 'content-type: application/json' -d '${EXAMPLE}'`}</code>
        </div>
      )}
      {schedules && schedules.length > 0 && (
        <div class="table-wrap">
          <table class="schedules">
            <thead>
              <tr>
                <th scope="col">Imports</th>
                <th scope="col">Dataset</th>
                <th scope="col">Every</th>
                <th scope="col">Status</th>
                <th scope="col" class="wide">
                  Next run
                </th>
                <th scope="col" class="num">
                  Runs
                </th>
                <th scope="col" class="num wide">
                  Skipped
                </th>
                <th scope="col">Last run</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {schedules.map((schedule) => (
                <tr key={schedule.schedule_id} data-schedule-id={schedule.schedule_id}>
                  <td class="source">
                    <Link href={`/schedules/${schedule.schedule_id}`}>{describeImport(schedule.import)}</Link>
                  </td>
                  <td data-testid="schedule-dataset">
                    <DatasetName schedule={schedule} />
                  </td>
                  <td data-testid="schedule-every">{schedule.every}</td>
                  <td>
                    <StateLabel schedule={schedule} />
                  </td>
                  <td class="wide">
                    {schedule.next_run_at ? <time dateTime={schedule.next_run_at}>{formatTime(schedule.next_run_at)}</time> : '—'}
                  </td>
                  <td class="num">{formatCount(schedule.runs)}</td>
                  <td class="num wide">{formatCount(schedule.skipped)}</td>
                  <td class="last-run">
                    <LastRun schedule={schedule} />
                  </td>
                  <td class="row-actions">
                    <ScheduleActions schedule={schedule} onDone={(now) => changed(schedule.schedule_id, now)} onError={setActionError} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

/** The last job it started (its status, opening its page) and why the last beat failed, if it did. */
function LastRun({ schedule }: { schedule: Schedule }) {
  const job = schedule.last_run;
  return (
    <>
      {job ? (
        <Link href={`/jobs/${job.job_id}`} class="last-run-link">
          <StatusBadge status={job.status} />
          <time dateTime={job.submitted_at}>{formatTime(job.submitted_at)}</time>
        </Link>
      ) : (
        <span class="muted">none yet</span>
      )}
      {schedule.last_error && (
        <span class="schedule-error" data-testid="schedule-error">
          {schedule.last_error}
        </span>
      )}
    </>
  );
}

/** One schedule: its settings, its state and actions, and its last runs. */
export function SchedulePage({ scheduleId }: { scheduleId: string }) {
  const { value: schedule, error, setValue, reload } = usePolled((signal) => getSchedule(scheduleId, signal), REFRESH_MS);
  const [actionError, setActionError] = useState<string | null>(null);
  const back = (
    <p>
      <Link href="/schedules">← All schedules</Link>
    </p>
  );

  // The schedule counts a run's failure at its next beat; its runs show it at once (newest first).
  const finished = schedule?.recent_runs.filter((run) => run.status !== 'queued' && run.status !== 'running') ?? [];
  const failedSince = finished.findIndex((run) => run.status !== 'failed');
  const failing = Math.max(schedule?.consecutive_failures ?? 0, failedSince === -1 ? finished.length : failedSince);

  if (error?.status === 404) {
    return (
      <section class="panel">
        {back}
        <Notice kind="error">There is no schedule {scheduleId}. It may have been deleted, or the link is wrong.</Notice>
      </section>
    );
  }
  if (!schedule) {
    return (
      <section class="panel">
        {back}
        {error ? <Notice kind="error">Could not load the schedule: {error.message}. Trying again…</Notice> : <p class="empty">Loading…</p>}
      </section>
    );
  }

  function changed(now: Schedule | null): void {
    if (!now) return navigate('/schedules');
    setValue((current: ScheduleDetail | null) => current && { ...current, ...now });
    reload();
  }

  return (
    <>
      <section class="panel" aria-labelledby="schedule-title">
        {back}
        <div class="job-head">
          <h2 id="schedule-title">{describeImport(schedule.import)}</h2>
          <StateLabel schedule={schedule} />
        </div>
        {error && <Notice kind="error">Could not refresh the schedule: {error.message}. Trying again…</Notice>}
        <dl class="stats">
          <div>
            <dt>Dataset</dt>
            <dd>
              <DatasetName schedule={schedule} />
            </dd>
          </div>
          <div>
            <dt>Every</dt>
            <dd data-testid="schedule-every">{schedule.every}</dd>
          </div>
          <div>
            <dt>Next run</dt>
            <dd>
              {schedule.next_run_at ? (
                <time dateTime={schedule.next_run_at}>{formatTime(schedule.next_run_at)}</time>
              ) : (
                <span class="muted">paused</span>
              )}
            </dd>
          </div>
          <div>
            <dt>Last run</dt>
            <dd>
              {schedule.last_run_at ? (
                <time dateTime={schedule.last_run_at}>{formatTime(schedule.last_run_at)}</time>
              ) : (
                <span class="muted">none yet</span>
              )}
            </dd>
          </div>
          <div>
            <dt>Runs</dt>
            <dd data-testid="schedule-runs">{formatCount(schedule.runs)}</dd>
          </div>
          <div>
            <dt>Skipped</dt>
            <dd>
              {formatCount(schedule.skipped)}
              <span class="muted"> while a run was still going</span>
              {schedule.deferred > 0 && <span class="muted">; {formatCount(schedule.deferred)} put off by the scheduled jobs' budget</span>}
            </dd>
          </div>
          {failing > 0 && (
            <div>
              <dt>Failing</dt>
              <dd data-testid="schedule-failures">
                {formatCount(failing)} in a row
                {schedule.failing_since && (
                  <span class="muted">
                    {' '}
                    since <time dateTime={schedule.failing_since}>{formatTime(schedule.failing_since)}</time>; runs back off from the 3rd,
                    paused after a day
                  </span>
                )}
              </dd>
            </div>
          )}
          <div>
            <dt>Created</dt>
            <dd>
              <time dateTime={schedule.created_at}>{formatTime(schedule.created_at)}</time>
            </dd>
          </div>
          <div>
            <dt>Schedule id</dt>
            <dd>
              <code>{schedule.schedule_id}</code>
            </dd>
          </div>
        </dl>
        <div class="actions">
          <ScheduleActions schedule={schedule} onDone={changed} onError={setActionError} />
        </div>
        {actionError && <Notice kind="error">{actionError}</Notice>}
        <IntervalForm schedule={schedule} onDone={changed} />
        {schedule.last_error && (
          <div class="job-error">
            <h3>
              {schedule.paused && schedule.last_error.startsWith('paused after failing')
                ? 'Paused after a day of failures'
                : schedule.consecutive_failures > 0
                  ? 'Failing'
                  : 'The last beat could not start a job'}
            </h3>
            <pre data-testid="schedule-error">{schedule.last_error}</pre>
          </div>
        )}
        <h3 class="subhead">Import</h3>
        <pre class="import-request">{JSON.stringify(schedule.import, null, 2)}</pre>
      </section>
      <section class="panel" aria-labelledby="runs-title">
        <h2 id="runs-title">Recent runs</h2>
        {schedule.recent_runs.length === 0 ? (
          <p class="empty">{schedule.paused ? 'No runs yet: it is paused.' : 'No runs yet: the first one starts at its next run.'}</p>
        ) : (
          <JobTable jobs={schedule.recent_runs} errors />
        )}
      </section>
    </>
  );
}
