import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { COLUMN_TYPES, ENCODINGS, FORMATS, WRITE_MODES, type ColumnType, type WriteMode } from '../core/job.js';
import {
  api,
  ApiError,
  createSchedule,
  listConnections,
  previewFile,
  previewImport,
  uploadFile,
  type Connection,
  type Preview,
  type SubmittedJob,
} from './api.js';
import { formatBytes } from './format.js';
import { navigate } from './router.js';
import { Choice, Link, Notice, optionsOf, ValueCell } from './ui.js';

type Outcome = { file: string; job: SubmittedJob } | { file: string; error: string };

/** Where the rows come from: files sent from this browser, a file the worker reads by its address, or a Jira pull. */
type SourceKind = 'file' | 'url' | 'jira';
const SOURCES = [
  ['file', 'File'],
  ['url', 'URL or S3'],
  ['jira', 'Jira'],
] as const;

/** How a file is loaded and read: every option of POST /api/upload and POST /api/import. */
interface LoadChoices {
  maxErrors: string;
  dataset: string;
  mode: WriteMode;
  key: string;
  format: string;
  encoding: string;
  delimiter: string;
  header: string;
  sheet: string;
}

const NO_CHOICES: LoadChoices = {
  maxErrors: '0',
  dataset: '',
  mode: 'append',
  key: '',
  format: '',
  encoding: '',
  delimiter: '',
  header: '',
  sheet: '',
};

const HEADERS = [
  ['', 'detect'],
  ['true', 'yes'],
  ['false', 'no: name the columns column_1…'],
] as const;

const DELIMITERS = [
  ['', 'detect'],
  [',', 'comma ,'],
  [';', 'semicolon ;'],
  ['tab', 'tab'],
  ['|', 'pipe |'],
  ['space', 'spaces'],
] as const;

/** How the file is read, as the API takes it (what is left at its default is left out); format too, which an upload sends in its query. */
function readFields(c: LoadChoices): Record<string, string> {
  const fields: Record<string, string> = {};
  if (c.format) fields.format = c.format;
  if (c.encoding) fields.encoding = c.encoding;
  if (c.delimiter) fields.delimiter = c.delimiter;
  if (c.header) fields.header = c.header;
  if (c.sheet.trim()) fields.sheet = c.sheet.trim();
  return fields;
}

/** The options as the API takes them (but format): what is left at its default is left out. */
function loadFields(c: LoadChoices): Record<string, string> {
  const { format: _format, ...read } = readFields(c);
  const fields: Record<string, string> = { max_errors: c.maxErrors, mode: c.mode, ...read };
  if (c.dataset.trim()) fields.dataset = c.dataset.trim();
  if (c.mode === 'merge' && c.key.trim()) fields.key = c.key.trim();
  return fields;
}

/** The datasets, offered by the dataset fields (a <datalist>). */
function DatasetNames() {
  const [names, setNames] = useState<string[]>([]);
  useEffect(() => {
    const controller = new AbortController();
    api.datasets({ limit: 100 }, controller.signal).then(
      (page) => setNames(page.results.map((row) => row.name)),
      () => {}, // a name can still be typed
    );
    return () => controller.abort();
  }, []);
  return (
    <datalist id="load-datasets">
      {names.map((name) => (
        <option value={name} key={name} />
      ))}
    </datalist>
  );
}

/**
 * The fields of how to load: bad rows, dataset, mode, key, and (folded) how to read the file.
 * A Jira pull takes only the first two: its issues are merged on their id, and it is no file.
 */
function LoadFields({ source, choices, set }: { source: SourceKind; choices: LoadChoices; set: (change: Partial<LoadChoices>) => void }) {
  const maxErrorsValid = /^\d{1,9}$/.test(choices.maxErrors);
  const jira = source === 'jira';
  return (
    <>
      <div class="load-fields">
        <label class="field">
          Bad rows allowed
          <input
            name="max_errors"
            type="number"
            min="0"
            step="1"
            inputMode="numeric"
            value={choices.maxErrors}
            aria-invalid={!maxErrorsValid}
            onInput={(event) => set({ maxErrors: event.currentTarget.value })}
          />
        </label>
        <label class="field">
          Dataset
          <input
            name="dataset"
            type="text"
            class="wide-input"
            list="load-datasets"
            placeholder={jira ? 'jira_issues' : 'from the file name'}
            autoComplete="off"
            spellcheck={false}
            value={choices.dataset}
            onInput={(event) => set({ dataset: event.currentTarget.value })}
          />
        </label>
        {!jira && (
          <Choice
            label="Mode"
            name="mode"
            value={choices.mode}
            options={optionsOf(WRITE_MODES)}
            set={(mode) => set({ mode: mode as WriteMode })}
          />
        )}
        {!jira && choices.mode === 'merge' && (
          <label class="field">
            Key
            <input
              name="key"
              type="text"
              class="wide-input"
              placeholder="id or sku,store"
              autoComplete="off"
              spellcheck={false}
              value={choices.key}
              onInput={(event) => set({ key: event.currentTarget.value })}
            />
          </label>
        )}
      </div>
      {!jira && (
        <details class="read-options">
          <summary>How to read the file (detected unless set)</summary>
          <div class="load-fields">
            <Choice
              label="Format"
              name="format"
              value={choices.format}
              options={optionsOf(FORMATS, ['', 'from the name'])}
              set={(format) => set({ format })}
            />
            <Choice
              label="Encoding"
              name="encoding"
              value={choices.encoding}
              options={optionsOf(ENCODINGS, ['', 'detect'])}
              set={(encoding) => set({ encoding })}
            />
            <Choice
              label="Delimiter"
              name="delimiter"
              value={choices.delimiter}
              options={DELIMITERS}
              set={(delimiter) => set({ delimiter })}
            />
            <Choice label="Header row" name="header" value={choices.header} options={HEADERS} set={(header) => set({ header })} />
            <label class="field">
              Sheet
              <input
                name="sheet"
                type="text"
                placeholder="the first"
                autoComplete="off"
                value={choices.sheet}
                onInput={(event) => set({ sheet: event.currentTarget.value })}
              />
            </label>
          </div>
        </details>
      )}
      <p class="help">
        {jira
          ? 'Issues that cannot be read are skipped and listed, up to the bad rows allowed; one more fails the job. The issues are merged into the dataset on their id: a pull adds new issues and updates the ones changed since the last pull.'
          : "Rows that cannot be read are skipped and listed, up to the bad rows allowed; one more fails the job. The rows load into the dataset's table (by default named after the file): append adds them, replace swaps the table's rows for them, merge updates the rows whose key columns match and adds the others."}
      </p>
    </>
  );
}

/** What is previewed: a file chosen here, or the file at an address the server reads. */
type PreviewTarget = { kind: 'file'; file: File } | { kind: 'url'; url: string };
type PreviewState = { status: 'reading' } | { status: 'done'; preview: Preview } | { status: 'failed'; message: string };

/** A preview reads at most 4 MiB of a file's text (PREVIEW_MAX_BYTES): one byte more tells it the file goes on. */
const PREVIEW_BYTES = 4 * 1024 ** 2 + 1;
/** A zip (a workbook is one) is read from its directory, at its end: previewed whole, up to this size. */
const PREVIEW_WHOLE_MAX_BYTES = 64 * 1024 ** 2;
/** Reading options typed or chosen in a row make one preview, this long after the last. */
const PREVIEW_DELAY_MS = 250;

/** What of a file the preview is sent: its start, or the whole of a zip or workbook; undefined when that is too large. */
function previewPart(file: File, format: string): Blob | undefined {
  const whole = format === 'xlsx' || /\.(zip|xlsx)$/i.test(file.name);
  if (!whole) return file.size > PREVIEW_BYTES ? file.slice(0, PREVIEW_BYTES) : file;
  return file.size <= PREVIEW_WHOLE_MAX_BYTES ? file : undefined;
}

/** The preview of `target` read with `reading`, read again when either changes. */
function usePreview(target: PreviewTarget | null, reading: Record<string, string>): PreviewState | null {
  const [state, setState] = useState<PreviewState | null>(null);
  const readingKey = JSON.stringify(reading);
  useEffect(() => {
    if (!target) {
      setState(null);
      return;
    }
    const controller = new AbortController();
    const fields = JSON.parse(readingKey) as Record<string, string>;
    let part: Blob | undefined;
    if (target.kind === 'file') {
      part = previewPart(target.file, fields.format ?? '');
      if (!part) {
        setState({
          status: 'failed',
          message: `A zip or workbook is previewed whole, and this one is larger than ${formatBytes(PREVIEW_WHOLE_MAX_BYTES)}: it loads as usual, with the types its rows give`,
        });
        return;
      }
    }
    setState({ status: 'reading' });
    const timer = window.setTimeout(() => {
      const answer =
        target.kind === 'file'
          ? previewFile(part!, target.file.name, fields, controller.signal)
          : previewImport({ url: target.url, ...fields }, controller.signal);
      answer.then(
        (preview) => setState({ status: 'done', preview }),
        (err: unknown) => {
          if (!controller.signal.aborted) setState({ status: 'failed', message: err instanceof Error ? err.message : String(err) });
        },
      );
    }, PREVIEW_DELAY_MS);
    return () => {
      window.clearTimeout(timer);
      controller.abort();
    };
  }, [target, readingKey]);
  return state;
}

/** The edited types the preview's columns still have: the job's `schema` ({column: type}), or undefined when none is edited. */
function schemaOf(edits: Record<string, ColumnType>, state: PreviewState | null): Record<string, ColumnType> | undefined {
  if (state?.status !== 'done') return undefined;
  const kept = Object.fromEntries(state.preview.columns.filter((c) => edits[c.name] !== undefined).map((c) => [c.name, edits[c.name]!]));
  return Object.keys(kept).length > 0 ? kept : undefined;
}

const DELIMITER_SHOWN: Record<string, string> = {
  ',': 'comma',
  ';': 'semicolon',
  '\t': 'tab',
  '|': 'pipe',
  ' ': 'spaces',
  ', ': 'comma and space',
};

/** How the preview read the file, in one line. */
function readingSummary(preview: Preview): string {
  const parts = [preview.format.toUpperCase(), preview.encoding];
  const dialect = preview.dialect as { delimiter?: string; header_row?: number | null } | null;
  if (dialect?.delimiter !== undefined) parts.push(`delimiter ${DELIMITER_SHOWN[dialect.delimiter] ?? JSON.stringify(dialect.delimiter)}`);
  if (dialect && 'header_row' in dialect)
    parts.push(dialect.header_row === null || dialect.header_row === undefined ? 'no header row' : `header on line ${dialect.header_row}`);
  const shown = preview.rows.length.toLocaleString('en-US');
  parts.push(preview.truncated ? `the first ${shown} rows shown, of more` : `${shown} rows`);
  return parts.join(' · ');
}

/**
 * The preview: how the file would be read, its first rows, and above each column its name and
 * type, which the user may change (only the changed types are sent, as the job's schema).
 */
function PreviewTable({
  name,
  state,
  edits,
  setType,
}: {
  name: string;
  state: PreviewState | null;
  edits: Record<string, ColumnType>;
  setType: (column: string, type: ColumnType, inferred: string) => void;
}) {
  if (!state) return null;
  if (state.status === 'reading')
    return (
      <p class="preview-status muted" role="status">
        Reading the start of {name}…
      </p>
    );
  if (state.status === 'failed')
    return (
      <Notice kind="error">
        <strong>{name}</strong> could not be previewed: {state.message}
      </Notice>
    );
  const { preview } = state;
  return (
    <section class="preview" aria-label="Preview">
      <h3 class="subhead">Preview</h3>
      <p class="preview-summary" data-testid="preview-summary">
        {readingSummary(preview)}
      </p>
      {preview.warnings.map((warning, index) => (
        <p class="help warn-text" key={index}>
          {warning}
        </p>
      ))}
      {preview.columns.length === 0 ? (
        <p class="empty">No columns: the start of the file holds no records.</p>
      ) : (
        <>
          <p class="help">
            Each column&apos;s type is what its values read as. Change one to load the column as that type (a value that does not fit is a
            bad row); the others are typed by the whole file, as usual.
          </p>
          <div class="table-wrap">
            <table class="preview-rows">
              <thead>
                <tr>
                  {preview.columns.map((column) => {
                    const edited = edits[column.name];
                    return (
                      <th
                        key={column.name}
                        scope="col"
                        class={edited ? 'edited' : undefined}
                        title={column.evidence.join('\n') || undefined}
                      >
                        <span class="column-name">{column.name}</span>
                        <select
                          aria-label={`Type of ${column.name}`}
                          value={edited ?? column.type}
                          onChange={(event) => setType(column.name, event.currentTarget.value as ColumnType, column.type)}
                        >
                          {COLUMN_TYPES.map((type) => (
                            <option value={type} key={type}>
                              {type}
                            </option>
                          ))}
                        </select>
                        {edited && <span class="inferred">read as {column.type}</span>}
                      </th>
                    );
                  })}
                </tr>
              </thead>
              <tbody>
                {preview.rows.map((row, index) => (
                  <tr key={index}>
                    {row.map((value, column) => (
                      <ValueCell value={value} key={column} />
                    ))}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
      {preview.row_errors.length > 0 && (
        <details class="preview-errors">
          <summary>
            {preview.row_errors.length}
            {preview.row_errors.length === 20 ? '+' : ''} bad {preview.row_errors.length === 1 ? 'row' : 'rows'} in the start of the file
          </summary>
          <ul>
            {preview.row_errors.map((error, index) => (
              <li key={index}>
                {error.error}
                {error.excerpt && <code class="excerpt"> {error.excerpt}</code>}
              </li>
            ))}
          </ul>
        </details>
      )}
    </section>
  );
}

/** Jira: a saved connection and the JQL of the issues to pull (connections are added on the Connections page). */
function JiraFields({
  connections,
  connection,
  setConnection,
  jql,
  setJql,
}: {
  connections: Connection[] | string | null;
  connection: string;
  setConnection: (id: string) => void;
  jql: string;
  setJql: (jql: string) => void;
}) {
  if (connections === null)
    return (
      <p class="muted" role="status">
        Loading the connections…
      </p>
    );
  if (typeof connections === 'string') return <Notice kind="error">The connections could not be read: {connections}</Notice>;
  if (connections.length === 0)
    return (
      <Notice kind="info">
        No Jira connection yet. Add one (the site, an email and an API token) on the <Link href="/connections">Connections page</Link>, then
        pull its issues here.
      </Notice>
    );
  return (
    <div class="load-fields jira-fields">
      <Choice
        label="Connection"
        name="connection"
        value={connection}
        options={connections.map((c) => [c.id, `${c.name} (${c.email})`] as const)}
        set={setConnection}
      />
      <label class="field">
        JQL
        <input
          name="jql"
          type="text"
          class="wide-input"
          placeholder="project = ABC"
          autoComplete="off"
          spellcheck={false}
          value={jql}
          onInput={(event) => setJql(event.currentTarget.value)}
        />
      </label>
    </div>
  );
}

/**
 * Loading data from the console: a file dropped or chosen (previewed, its columns' types
 * editable, then uploaded; several are uploaded one after another), a file by URL or s3://
 * address read by the worker, or Jira issues through a saved connection; once or on a
 * schedule, with every option the API takes.
 */
export function Upload() {
  const input = useRef<HTMLInputElement>(null);
  const [source, setSource] = useState<SourceKind>('file');
  const [choices, setChoices] = useState<LoadChoices>(NO_CHOICES);
  const set = (change: Partial<LoadChoices>) => setChoices((current) => ({ ...current, ...change }));
  const [dragging, setDragging] = useState(false);
  const [picked, setPicked] = useState<File[]>([]);
  const [sending, setSending] = useState<{ file: string; sent: number; total: number } | null>(null);
  const [outcomes, setOutcomes] = useState<Outcome[]>([]);
  const [url, setUrl] = useState('');
  const [previewedUrl, setPreviewedUrl] = useState('');
  const [every, setEvery] = useState('');
  const [importing, setImporting] = useState(false);
  const [connections, setConnections] = useState<Connection[] | string | null>(null);
  const [connection, setConnection] = useState('');
  const [jql, setJql] = useState('');
  const [edits, setEdits] = useState<Record<string, ColumnType>>({});

  const maxErrorsValid = /^\d{1,9}$/.test(choices.maxErrors);
  const target = useMemo<PreviewTarget | null>(() => {
    if (source === 'file') return picked.length === 1 ? { kind: 'file', file: picked[0]! } : null;
    if (source === 'url') return previewedUrl ? { kind: 'url', url: previewedUrl } : null;
    return null;
  }, [source, picked, previewedUrl]);
  const preview = usePreview(target, readFields(choices));
  const schema = schemaOf(edits, preview);

  // The connections, read again each time Jira is chosen (one may have been added meanwhile).
  useEffect(() => {
    if (source !== 'jira') return;
    const controller = new AbortController();
    listConnections(controller.signal).then(
      (list) => {
        setConnections(list);
        setConnection((current) => (list.some((c) => c.id === current) ? current : (list[0]?.id ?? '')));
      },
      (err: unknown) => !controller.signal.aborted && setConnections(err instanceof Error ? err.message : String(err)),
    );
    return () => controller.abort();
  }, [source]);

  function pick(files: File[]): void {
    if (files.length === 0 || sending) return;
    setPicked(files);
    setEdits({});
  }

  function setType(column: string, type: ColumnType, inferred: string): void {
    setEdits((current) => {
      const { [column]: _old, ...rest } = current;
      return type === inferred ? rest : { ...rest, [column]: type };
    });
  }

  async function send(files: File[]): Promise<void> {
    if (files.length === 0 || sending) return;
    if (!maxErrorsValid) {
      setOutcomes([{ file: files[0]!.name, error: 'Bad rows allowed must be a whole number, 0 or more' }]);
      return;
    }
    const fields = { ...loadFields(choices), ...(schema && { schema: JSON.stringify(schema) }) };
    const done: Outcome[] = [];
    for (const file of files) {
      setSending({ file: file.name, sent: 0, total: file.size });
      try {
        const job = await uploadFile(file, fields, choices.format || undefined, (sent, total) =>
          setSending({ file: file.name, sent, total }),
        );
        done.push({ file: file.name, job });
      } catch (err) {
        done.push({ file: file.name, error: err instanceof ApiError ? err.message : String(err) });
      }
      setOutcomes([...done]);
    }
    setSending(null);
    // Those refused stay chosen, with their types, to send again once the options are put right.
    const refused = files.filter((_, index) => 'error' in done[index]!);
    setPicked(refused.length === files.length ? files : refused);
    if (refused.length === 0) setEdits({});
    if (input.current) input.current.value = '';
  }

  /** The body of POST /api/import (and of a schedule's import) the form makes, or undefined when it is not filled in. */
  function importBody(): Record<string, unknown> | undefined {
    const maxErrors = Number(choices.maxErrors);
    if (source === 'jira') {
      if (!connection || jql.trim() === '') return undefined;
      return {
        source: 'jira',
        connection,
        jql: jql.trim(),
        max_errors: maxErrors,
        ...(choices.dataset.trim() && { dataset: choices.dataset.trim() }),
      };
    }
    if (url.trim() === '') return undefined;
    return {
      url: url.trim(),
      ...loadFields(choices),
      max_errors: maxErrors,
      ...(choices.format && { format: choices.format }),
      ...(previewedUrl === url.trim() && schema && { schema }),
    };
  }

  async function importSource(): Promise<void> {
    const body = importBody();
    if (!body || importing) return;
    const shown = source === 'jira' ? `Jira: ${jql.trim()}` : url.trim();
    if (!maxErrorsValid) {
      setOutcomes([{ file: shown, error: 'Bad rows allowed must be a whole number, 0 or more' }]);
      return;
    }
    setImporting(true);
    try {
      if (every.trim()) {
        const schedule = await createSchedule({ import: body, every: every.trim() });
        navigate(`/schedules/${schedule.schedule_id}`);
      } else {
        const job = await api.import(body);
        setOutcomes([{ file: shown, job }]);
      }
    } catch (err) {
      setOutcomes([{ file: shown, error: err instanceof Error ? err.message : String(err) }]);
    } finally {
      setImporting(false);
    }
  }

  const reading = preview?.status === 'reading';
  const canImport = importBody() !== undefined && !importing;
  const uploadLabel = picked.length > 1 ? `Upload ${picked.length} files` : 'Upload';

  return (
    <section class="panel upload" aria-labelledby="upload-title">
      <h2 id="upload-title">Upload or import</h2>
      <DatasetNames />
      <fieldset class="source-choice">
        <legend>Load from</legend>
        {SOURCES.map(([kind, shown]) => (
          <label key={kind} class={source === kind ? 'chosen' : undefined}>
            <input type="radio" name="source" value={kind} checked={source === kind} onChange={() => setSource(kind)} />
            {shown}
          </label>
        ))}
      </fieldset>
      <form
        class="load-form"
        onSubmit={(event) => {
          event.preventDefault();
          if (source === 'file') void send(picked);
          else void importSource();
        }}
      >
        {source === 'file' && (
          <div
            class={`dropzone${dragging ? ' dragging' : ''}`}
            data-testid="dropzone"
            onDragOver={(event) => {
              event.preventDefault();
              setDragging(true);
            }}
            onDragLeave={() => setDragging(false)}
            onDrop={(event) => {
              event.preventDefault();
              setDragging(false);
              pick([...(event.dataTransfer?.files ?? [])]);
            }}
          >
            <p>Drop CSV, JSON, NDJSON or Excel files (also .gz, .zst, .zip) here, or</p>
            <button type="button" class="button" onClick={() => input.current?.click()} disabled={sending !== null}>
              Choose files…
            </button>
            <input
              ref={input}
              type="file"
              accept=".csv,.tsv,.json,.ndjson,.jsonl,.xlsx,.gz,.zst,.zip"
              multiple
              hidden
              aria-label="Files to upload"
              onChange={(event) => pick([...(event.currentTarget.files ?? [])])}
            />
            {picked.length > 0 && (
              <p class="picked" data-testid="picked">
                Chosen: {picked.map((file) => `${file.name} (${formatBytes(file.size)})`).join(', ')}
                {picked.length > 1 && <span class="help"> Each is uploaded with the options below; choose one file to preview it.</span>}
              </p>
            )}
          </div>
        )}
        {source === 'url' && (
          <div class="load-fields">
            <label class="field">
              Address
              <input
                name="url"
                type="text"
                class="wide-input url-input"
                placeholder="https://…/orders.csv or s3://bucket/key"
                autoComplete="off"
                spellcheck={false}
                value={url}
                onInput={(event) => {
                  setUrl(event.currentTarget.value);
                  // The preview shown is of the address previewed: another one is previewed anew.
                  if (previewedUrl) setPreviewedUrl('');
                }}
              />
            </label>
            <button
              type="button"
              class="button"
              disabled={url.trim() === '' || previewedUrl === url.trim()}
              onClick={() => {
                setEdits({});
                setPreviewedUrl(url.trim());
              }}
            >
              Preview
            </button>
          </div>
        )}
        {source === 'jira' && (
          <JiraFields connections={connections} connection={connection} setConnection={setConnection} jql={jql} setJql={setJql} />
        )}
        <LoadFields source={source} choices={choices} set={set} />
        <PreviewTable
          name={target?.kind === 'file' ? target.file.name : (target?.url ?? '')}
          state={preview}
          edits={schemaOf(edits, preview) ?? {}}
          setType={setType}
        />
        <div class="load-actions">
          {source !== 'file' && (
            <label class="field">
              Run every
              <input
                name="every"
                type="text"
                placeholder="once"
                size={8}
                autoComplete="off"
                value={every}
                aria-describedby="every-help"
                onInput={(event) => setEvery(event.currentTarget.value)}
              />
            </label>
          )}
          {source === 'file' ? (
            <>
              <button type="submit" class="button primary" disabled={picked.length === 0 || sending !== null || reading}>
                {uploadLabel}
              </button>
              {picked.length > 0 && sending === null && (
                <button
                  type="button"
                  class="button"
                  onClick={() => {
                    setPicked([]);
                    setEdits({});
                    if (input.current) input.current.value = '';
                  }}
                >
                  Clear
                </button>
              )}
            </>
          ) : (
            <button type="submit" class="button primary" disabled={!canImport || (source === 'url' && reading)}>
              {every.trim() ? 'Create schedule' : 'Import'}
            </button>
          )}
          {schema && (
            <span class="muted" data-testid="schema-sent">
              Types set:{' '}
              {Object.entries(schema)
                .map(([column, type]) => `${column} ${type}`)
                .join(', ')}
            </span>
          )}
          {source !== 'file' && (
            <p id="every-help" class="help">
              Leave empty to import once; 15m, 1h or 1d makes a schedule that imports it again at that interval.
            </p>
          )}
        </div>
      </form>
      {sending && (
        <p class="sending" role="status">
          Uploading {sending.file}: {formatBytes(sending.sent)} of {formatBytes(sending.total)}
          <progress max={sending.total || 1} value={sending.sent} />
        </p>
      )}
      {outcomes.map((outcome, index) =>
        'job' in outcome ? (
          <Notice kind="info" key={index}>
            <strong>{outcome.file}</strong> {outcome.job.source_type.endsWith('_upload') ? 'uploaded' : 'to import'}, job queued. Status
            URL:{' '}
            <a href={outcome.job.status_url} class="status-url">
              {new URL(outcome.job.status_url, location.href).href}
            </a>{' '}
            · <Link href={`/jobs/${outcome.job.job_id}`}>Open the job</Link>
          </Notice>
        ) : (
          <Notice kind="error" key={index}>
            <strong>{outcome.file}</strong> was not accepted: {outcome.error}
          </Notice>
        ),
      )}
    </section>
  );
}
