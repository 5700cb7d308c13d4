import { api } from '../api.js';
import { formatCount, formatTime } from '../format.js';
import { usePages } from '../paged.js';
import { Link, Notice } from '../ui.js';

const PAGE_SIZE = 50;
const LISTED_COLUMNS = 8; // column names shown under a dataset's name; the count says how many in all

/** The datasets, by name: each one's columns, rows and when it was last loaded. */
export function DatasetsPage() {
  const { rows: datasets, next, error, loading, more } = usePages((cursor, signal) => api.datasets({ limit: PAGE_SIZE, cursor }, signal));
  return (
    <section class="panel" aria-labelledby="datasets-title">
      <h2 id="datasets-title">Datasets</h2>
      {error && <Notice kind="error">Could not load the datasets: {error}</Notice>}
      {!datasets && !error && <p class="empty">Loading…</p>}
      {datasets && datasets.length === 0 && (
        <p class="empty">
          No datasets yet. Every job loads its rows into one: <Link href="/">upload a file</Link> and its dataset appears here when the job
          completes.
        </p>
      )}
      {datasets && datasets.length > 0 && (
        <div class="table-wrap">
          <table class="datasets">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col" class="num">
                  Rows
                </th>
                <th scope="col" class="num">
                  Columns
                </th>
                <th scope="col" class="wide">
                  Last loaded
                </th>
              </tr>
            </thead>
            <tbody>
              {datasets.map((dataset) => {
                const names = dataset.columns.map((column) => column.name);
                return (
                  <tr key={dataset.name} data-dataset={dataset.name}>
                    <td class="source">
                      <Link href={`/datasets/${dataset.name}`}>{dataset.name}</Link>
                      <span class="muted">
                        {names.slice(0, LISTED_COLUMNS).join(', ')}
                        {names.length > LISTED_COLUMNS ? ', …' : ''}
                      </span>
                    </td>
                    <td class="num">{formatCount(dataset.row_count)}</td>
                    <td class="num">{formatCount(dataset.columns.length)}</td>
                    <td class="wide">
                      <time dateTime={dataset.updated_at}>{formatTime(dataset.updated_at)}</time>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {next && (
        <button type="button" class="button" disabled={loading} onClick={more}>
          Show more datasets
        </button>
      )}
    </section>
  );
}
