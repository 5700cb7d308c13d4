import { useState } from 'preact/hooks';
import { ApiError, createConnection, listConnections, removeConnection, type Connection } from '../api.js';
import { formatTime } from '../format.js';
import { usePolled } from '../polled.js';
import { Link, Notice } from '../ui.js';

// Connections change rarely (here, or by the API): the list is read again this often.
const REFRESH_MS = 10_000;
const EXAMPLE = JSON.stringify({ type: 'jira', base_url: 'https://your-team.atlassian.net', email: 'you@example.com', api_token: '…' });

/** The API's refusal as the person adding a connection should read it. */
function whyNotSaved(err: unknown): string {
  if (!(err instanceof ApiError)) return `The connection was not saved: ${err instanceof Error ? err.message : String(err)}`;
  if (err.code === 'connection_invalid') return err.message; // "The connection was not saved: Jira answered …"
  return `The connection was not saved: ${err.message}`;
}

/**
 * A Jira connection: site, account email and API token, checked by the server with a call to the
 * site before it is saved. The token leaves the form when it is sent, whatever the answer: it is
 * sent once and never shown again.
 */
function ConnectionForm({ onSaved }: { onSaved: (connection: Connection) => void }) {
  const [name, setName] = useState('');
  const [baseUrl, setBaseUrl] = useState('');
  const [email, setEmail] = useState('');
  const [token, setToken] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState<Connection | null>(null);

  async function save(): Promise<void> {
    const apiToken = token;
    setToken('');
    setBusy(true);
    setError(null);
    setSaved(null);
    try {
      const connection = await createConnection({
        type: 'jira',
        ...(name.trim() && { name: name.trim() }),
        base_url: baseUrl.trim(),
        email: email.trim(),
        api_token: apiToken,
      });
      setName('');
      setBaseUrl('');
      setEmail('');
      setSaved(connection);
      onSaved(connection);
    } catch (err) {
      setError(whyNotSaved(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section class="panel" aria-labelledby="add-connection-title">
      <h2 id="add-connection-title">Add a Jira connection</h2>
      <form
        class="connection-form"
        onSubmit={(event) => {
          event.preventDefault();
          void save();
        }}
      >
        <label class="field">
          Jira site
          <input
            name="base_url"
            type="url"
            required
            value={baseUrl}
            placeholder="https://your-team.atlassian.net"
            autoComplete="off"
            onInput={(event) => setBaseUrl(event.currentTarget.value)}
          />
        </label>
        <label class="field">
          Email
          <input
            name="email"
            type="email"
            required
            value={email}
            placeholder="you@example.com"
            autoComplete="off"
            onInput={(event) => setEmail(event.currentTarget.value)}
          />
        </label>
        <label class="field">
          API token
          <input
            name="api_token"
            type="password"
            required
            value={token}
            autoComplete="new-password"
            aria-describedby="token-help"
            onInput={(event) => setToken(event.currentTarget.value)}
          />
        </label>
        <label class="field">
          Name
          <input
            name="name"
            value={name}
            placeholder="the site's host"
            autoComplete="off"
            onInput={(event) => setName(event.currentTarget.value)}
          />
        </label>
        <button type="submit" class="button primary" disabled={busy || baseUrl.trim() === '' || email.trim() === '' || token === ''}>
          {busy ? 'Checking…' : 'Check and save'}
        </button>
      </form>
      <p class="help muted" id="token-help">
        Intake checks the site, email and token with a call to Jira before it saves them. The token is stored sealed with the server's
        SECRET_KEY and is never shown again, here or by the API: the form forgets it once it is sent. Create one at
        id.atlassian.com/manage-profile/security/api-tokens.
      </p>
      {error && (
        <Notice kind="error">
          <span data-testid="connection-error">{error}</span>
        </Notice>
      )}
      {saved && (
        <Notice kind="info">
          Connection <strong>{saved.name}</strong> saved: import from it with its id <code>{saved.id}</code>.
        </Notice>
      )}
    </section>
  );
}

/** The saved connections (never their tokens), a form to add a Jira one, and Delete (after a confirm). */
export function ConnectionsPage() {
  const { value: connections, error, setValue, reload } = usePolled(listConnections, REFRESH_MS);
  const [actionError, setActionError] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);

  async function remove(connection: Connection): Promise<void> {
    if (
      !window.confirm(
        `Delete the connection ${connection.name} (${connection.email})? Its token is deleted with it; imports and schedules that name it fail until they name another.`,
      )
    )
      return;
    setBusy(connection.id);
    setActionError(null);
    try {
      await removeConnection(connection.id);
    } catch (err) {
      // Gone already is what was asked.
      if (!(err instanceof ApiError && err.status === 404))
        setActionError(`Could not delete the connection: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      setBusy(null);
    }
    setValue((current) => current && current.filter((row) => row.id !== connection.id));
    reload();
  }

  return (
    <>
      <section class="panel" aria-labelledby="connections-title">
        <h2 id="connections-title">Connections</h2>
        {error && <Notice kind="error">Could not load the connections: {error.message}. Trying again…</Notice>}
        {actionError && <Notice kind="error">{actionError}</Notice>}
        {!connections && !error && <p class="empty">Loading…</p>}
        {connections && connections.length === 0 && (
          <div class="empty">
            <p>
              No connections yet. A connection keeps what Intake needs to pull from a source on its own: a Jira site, an account's email and
              its API token. Imports and schedules then name it to pull issues into a dataset. Add one with the form below, or with the API:
            </p>
            <code class="command">{`curl -X POST ${location.origin}/api/connections -H 'content-type: application/json' -d '${EXAMPLE}'`}</code>
            <p>then import with it (its id is listed here):</p>
            <code class="command">intake import jira --connection ID --jql 'project = ABC' --dataset abc_issues --wait</code>
          </div>
        )}
        {connections && connections.length > 0 && (
          <>
            <div class="table-wrap">
              <table class="connections">
                <thead>
                  <tr>
                    <th scope="col">Name</th>
                    <th scope="col">Site and account</th>
                    <th scope="col" class="wide">
                      Id
                    </th>
                    <th scope="col" class="wide">
                      Added
                    </th>
                    <th scope="col">Actions</th>
                  </tr>
                </thead>
                <tbody>
                  {connections.map((connection) => (
                    <tr key={connection.id} data-connection-id={connection.id}>
                      <td class="source">
                        {connection.name}
                        <span class="muted">{connection.type}</span>
                      </td>
                      <td class="connection-site">
                        {connection.base_url}
                        <span class="muted connection-email">{connection.email}</span>
                      </td>
                      <td class="wide">
                        <code>{connection.id}</code>
                      </td>
                      <td class="wide">
                        <time dateTime={connection.created_at}>{formatTime(connection.created_at)}</time>
                      </td>
                      <td class="row-actions">
                        <button
                          type="button"
                          class="button danger"
                          disabled={busy === connection.id}
                          onClick={() => void remove(connection)}
                        >
                          Delete
                        </button>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
            <p class="help muted">
              Import from one with its id: the Jira choice of the <Link href="/">import form</Link>, <code>POST /api/import</code> with{' '}
              <code>{'{"source": "jira", "connection": ID, "jql": …}'}</code>, or <code>intake import jira --connection ID --jql …</code>; a
              schedule takes the same import.
            </p>
          </>
        )}
      </section>
      <ConnectionForm
        onSaved={(connection) => {
          setValue((current) => (current ? [...current.filter((row) => row.id !== connection.id), connection] : [connection]));
          reload();
        }}
      />
    </>
  );
}
