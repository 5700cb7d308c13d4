import { useEffect, useRef, useState } from 'preact/hooks';
import { ENCODINGS, FORMATS, WRITE_MODES, type WriteMode } from '../core/job.js';
import { api, ApiError, createSchedule, uploadFile, type SubmittedJob } from './api.js';
import { formatBytes } from './format.js';
import { navigate } from './router.js';
import { Choice, Link, Notice, optionsOf } from './ui.js';

type Outcome = { file: string; job: SubmittedJob } | { file: string; error: string };

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

/** The options as the API takes them: what is left at its default is left out. */
function loadFields(c: LoadChoices): Record<string, string> {
  const fields: Record<string, string> = { max_errors: c.maxErrors, mode: c.mode };
  if (c.dataset.trim()) fields.dataset = c.dataset.trim();
  if (c.mode === 'merge' && c.key.trim()) fields.key = c.key.trim();
  if (c.encoding) fields.encoding = c.encoding;
  if (c.delimiter) fields.delimiter = c.delimiter;
  if (c.header) fields.header = c.header;
  if (c.sheet.trim()) fields.sheet = c.sheet.trim();
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

/** The fields of how to load: bad rows, dataset, mode, key, and (folded) how to read the file. */
function LoadFields({ choices, set }: { choices: LoadChoices; set: (change: Partial<LoadChoices>) => void }) {
  const maxErrorsValid = /^\d{1,9}$/.test(choices.maxErrors);
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
            placeholder="from the file name"
            autoComplete="off"
            spellcheck={false}
            value={choices.dataset}
            onInput={(event) => set({ dataset: event.currentTarget.value })}
          />
        </label>
        <Choice
          label="Mode"
          name="mode"
          value={choices.mode}
          options={optionsOf(WRITE_MODES)}
          set={(mode) => set({ mode: mode as WriteMode })}
        />
        {choices.mode === 'merge' && (
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
      <p class="help">
        Rows that cannot be read are skipped and listed, up to the bad rows allowed; one more fails the job. The rows load into the
        dataset&apos;s table (by default named after the file): append adds them, replace swaps the table&apos;s rows for them, merge
        updates the rows whose key columns match and adds the others.
      </p>
    </>
  );
}

/**
 * Loading data from the console: files dropped or chosen (uploaded one after another, each
 * status URL shown), or a file by URL or s3:// address read by the worker, once or on a
 * schedule; with every option the API takes.
 */
export function Upload() {
  const input = useRef<HTMLInputElement>(null);
  const [choices, setChoices] = useState<LoadChoices>(NO_CHOICES);
  const set = (change: Partial<LoadChoices>) => setChoices((current) => ({ ...current, ...change }));
  const [dragging, setDragging] = useState(false);
  const [sending, setSending] = useState<{ file: string; sent: number; total: number } | null>(null);
  const [outcomes, setOutcomes] = useState<Outcome[]>([]);
  const [url, setUrl] = useState('');
  const [every, setEvery] = useState('');
  const [importing, setImporting] = useState(false);

  const maxErrorsValid = /^\d{1,9}$/.test(choices.maxErrors);

  async function send(files: File[]): Promise<void> {
    if (files.length === 0 || sending) return;
    if (!maxErrorsValid) {
      setOutcomes([{ file: files[0]!.name, error: 'Bad rows allowed must be a whole number, 0 or more' }]);
      return;
    }
    const done: Outcome[] = [];
    for (const file of files) {
      setSending({ file: file.name, sent: 0, total: file.size });
      try {
        const job = await uploadFile(file, loadFields(choices), choices.format || undefined, (sent, total) =>
          setSending({ file: file.name, sent, total }),
        );
        done.push({ file: file.name, job });
      } catch (err) {
        done.push({ file: file.name, error: err instanceof ApiError ? err.message : String(err) });
      }
      setOutcomes([...done]);
    }
    setSending(null);
    if (input.current) input.current.value = '';
  }

  async function importUrl(): Promise<void> {
    if (url.trim() === '' || importing) return;
    setImporting(true);
    const body = {
      url: url.trim(),
      ...loadFields(choices),
      max_errors: Number(choices.maxErrors),
      ...(choices.format && { format: choices.format }),
    };
    try {
      if (every.trim()) {
        const schedule = await createSchedule({ import: body, every: every.trim() });
        navigate(`/schedules/${schedule.schedule_id}`);
      } else {
        const job = await api.import(body);
        setOutcomes([{ file: url.trim(), job }]);
      }
    } catch (err) {
      setOutcomes([{ file: url.trim(), error: err instanceof Error ? err.message : String(err) }]);
    } finally {
      setImporting(false);
    }
  }

  return (
    <section class="panel upload" aria-labelledby="upload-title">
      <h2 id="upload-title">Upload or import</h2>
      <DatasetNames />
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
          void send([...(event.dataTransfer?.files ?? [])]);
        }}
      >
        <p>Drop CSV, JSON, NDJSON or Excel files (also .gz, .zst, .zip) here, or</p>
        <button type="button" class="button primary" onClick={() => input.current?.click()} disabled={sending !== null}>
          Choose files…
        </button>
        <input
          ref={input}
          type="file"
          accept=".csv,.tsv,.json,.ndjson,.jsonl,.xlsx,.gz,.zst,.zip"
          multiple
          hidden
          aria-label="Files to upload"
          onChange={(event) => void send([...(event.currentTarget.files ?? [])])}
        />
      </div>
      <form
        class="import-form"
        onSubmit={(event) => {
          event.preventDefault();
          void importUrl();
        }}
      >
        <label class="field">
          Or import from a URL
          <input
            name="url"
            type="text"
            class="wide-input"
            placeholder="https://…/orders.csv or s3://bucket/key"
            autoComplete="off"
            spellcheck={false}
            value={url}
            onInput={(event) => setUrl(event.currentTarget.value)}
          />
        </label>
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
        <button type="submit" class="button" disabled={url.trim() === '' || importing}>
          {every.trim() ? 'Create schedule' : 'Import'}
        </button>
        <p id="every-help" class="help">
          Leave empty to import once; 15m, 1h or 1d makes a schedule that imports it again at that interval.
        </p>
      </form>
      <LoadFields choices={choices} set={set} />
      {sending && (
        <p class="sending" role="status">
          Uploading {sending.file}: {formatBytes(sending.sent)} of {formatBytes(sending.total)}
          <progress max={sending.total || 1} value={sending.sent} />
        </p>
      )}
      {outcomes.map((outcome, index) =>
        'job' in outcome ? (
          <Notice kind="info" key={index}>
            <strong>{outcome.file}</strong> {outcome.job.source_type.endsWith('_import') ? 'to import' : 'uploaded'}, job queued. Status
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
