import { render } from 'preact';
import { JobPage } from './pages/job.js';
import { JobsPage } from './pages/jobs.js';
import { useRoute } from './router.js';
import { Link } from './ui.js';
import './style.css';

function App() {
  const route = useRoute();
  return (
    <>
      <header class="top">
        <Link href="/" class="brand">
          Intake
        </Link>
        <nav aria-label="Main">
          <Link href="/">Jobs</Link>
          <a href="/docs">API</a>
        </nav>
      </header>
      <main>
        {route.page === 'jobs' && <JobsPage query={route.query} />}
        {route.page === 'job' && <JobPage jobId={route.jobId} key={route.jobId} />}
        {route.page === 'missing' && (
          <section class="panel">
            <p>There is no such page. </p>
            <Link href="/">Go to the jobs</Link>
          </section>
        )}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
