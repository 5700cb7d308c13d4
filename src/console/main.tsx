import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { accessToken, onUnauthorized } from './api.js';
import { ConnectionsPage } from './pages/connections.js';
import { DatasetPage } from './pages/dataset.js';
import { DatasetsPage } from './pages/datasets.js';
import { JobPage } from './pages/job.js';
import { JobsPage } from './pages/jobs.js';
import { QueryPage } from './pages/query.js';
import { SchedulePage, SchedulesPage } from './pages/schedules.js';
import { useRoute } from './router.js';
import { Link, Notice } from './ui.js';
import './style.css';

/** Asked for when the API answers 401 (Intake runs with API_TOKENS); kept for this tab's session. */
function TokenForm({ message }: { message: string }) {
  const [token, setToken] = useState('');
  const hadToken = accessToken.get() !== null;
  return (
    <section class="panel" aria-labelledby="token-title">
      <h2 id="token-title">Access token</h2>
      <Notice kind={hadToken ? 'error' : 'info'}>
        {hadToken ? `${message}. Enter another one.` : 'This Intake requires an access token.'}
      </Notice>
      <form
        class="token-form"
        onSubmit={(event) => {
          event.preventDefault();
          if (token.trim() === '') return;
          accessToken.set(token.trim());
          location.reload();
        }}
      >
        <label class="field">
          Token
          <input type="password" autoComplete="off" value={token} onInput={(event) => setToken(event.currentTarget.value)} autoFocus />
        </label>
        <button type="submit" class="button primary">
          Use this token
        </button>
      </form>
      <p class="help muted">It is kept in this browser tab until you close it or sign out.</p>
    </section>
  );
}

function App() {
  const route = useRoute();
  const [authMessage, setAuthMessage] = useState<string | null>(null);
  useEffect(() => onUnauthorized(setAuthMessage), []);
  return (
    <>
      <header class="top">
        <Link href="/" class="brand">
          Intake
        </Link>
        <nav aria-label="Main">
          <Link href="/">Jobs</Link>
          <Link href="/datasets">Datasets</Link>
          <Link href="/schedules">Schedules</Link>
          <Link href="/query">Query</Link>
          <Link href="/connections">Connections</Link>
          <a href="/docs">API</a>
          {accessToken.get() !== null && (
            <button
              type="button"
              class="link-button"
              onClick={() => {
                accessToken.clear();
                location.reload();
              }}
            >
              Sign out
            </button>
          )}
        </nav>
      </header>
      <main>
        {authMessage !== null ? (
          <TokenForm message={authMessage} />
        ) : (
          <>
            {route.page === 'jobs' && <JobsPage query={route.query} />}
            {route.page === 'job' && <JobPage jobId={route.jobId} key={route.jobId} />}
            {route.page === 'datasets' && <DatasetsPage />}
            {route.page === 'dataset' && <DatasetPage name={route.name} key={route.name} />}
            {route.page === 'schedules' && <SchedulesPage />}
            {route.page === 'query' && <QueryPage query={route.query} />}
            {route.page === 'schedule' && <SchedulePage scheduleId={route.scheduleId} key={route.scheduleId} />}
            {route.page === 'connections' && <ConnectionsPage />}
            {route.page === 'missing' && (
              <section class="panel">
                <p>There is no such page. </p>
                <Link href="/">Go to the jobs</Link>
              </section>
            )}
          </>
        )}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
