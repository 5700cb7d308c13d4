import { useRef, useState } from 'preact/hooks';
import { WRITE_MODES, type WriteMode } from '../core/job.js';
import { ApiError, uploadFile, type SubmittedJob } from './api.js';
import { formatBytes } from './format.js';
import { Link, Notice } from './ui.js';

type Outcome = { file: string; job: SubmittedJob } | { file: string; error: string };

/** Drop zone and file picker, with how to load the files; uploads one file after another and shows each status URL. */
export function Upload() {
  const input = useRef<HTMLInputElement>(null);
  const [maxErrors, setMaxErrors] = useState('0');
  const [dataset, setDataset] = useState('');
  const [mode, setMode] = useState<WriteMode>('append');
  const [key, setKey] = useState('');
  const [dragging, setDragging] = useState(false);
  const [sending, setSending] = useState<{ file: string; sent: number; total: number } | null>(null);
  const [outcomes, setOutcomes] = useState<Outcome[]>([]);

  const maxErrorsValid = /^\d{1,9}$/.test(maxErrors);

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
        const options = { maxErrors: Number(maxErrors), dataset: dataset.trim(), mode, key: mode === 'merge' ? key.trim() : '' };
        const job = await uploadFile(file, options, (sent, total) => setSending({ file: file.name, sent, total }));
        done.push({ file: file.name, job });
      } catch (err) {
        done.push({ file: file.name, error: err instanceof ApiError ? err.message : String(err) });
      }
      setOutcomes([...done]);
    }
    setSending(null);
    if (input.current) input.current.value = '';
  }

  return (
    <section class="panel upload" aria-labelledby="upload-title">
      <h2 id="upload-title">Upload</h2>
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
        <label class="field">
          Bad rows allowed
          <input
            type="number"
            min="0"
            step="1"
            inputMode="numeric"
            value={maxErrors}
            aria-invalid={!maxErrorsValid}
            aria-describedby="max-errors-help"
            onInput={(event) => setMaxErrors(event.currentTarget.value)}
          />
        </label>
        <p id="max-errors-help" class="help">
          Rows that cannot be read are skipped and listed, up to this many; one more fails the job. 0: the first bad row fails it.
        </p>
        <label class="field">
          Dataset
          <input
            type="text"
            class="wide-input"
            placeholder="from the file name"
            autoComplete="off"
            spellcheck={false}
            value={dataset}
            aria-describedby="load-help"
            onInput={(event) => setDataset(event.currentTarget.value)}
          />
        </label>
        <label class="field">
          Mode
          <select value={mode} aria-describedby="load-help" onChange={(event) => setMode(event.currentTarget.value as WriteMode)}>
            {WRITE_MODES.map((value) => (
              <option value={value} key={value}>
                {value}
              </option>
            ))}
          </select>
        </label>
        {mode === 'merge' && (
          <label class="field">
            Key
            <input
              type="text"
              class="wide-input"
              placeholder="id or sku,store"
              autoComplete="off"
              spellcheck={false}
              value={key}
              aria-describedby="load-help"
              onInput={(event) => setKey(event.currentTarget.value)}
            />
          </label>
        )}
        <p id="load-help" class="help">
          The rows load into the dataset's table (lower-case letters, digits and _; by default named after the file). append adds them,
          replace swaps the table's rows for them, merge updates the rows whose key columns match and adds the others.
        </p>
      </div>
      {sending && (
        <p class="sending" role="status">
          Uploading {sending.file}: {formatBytes(sending.sent)} of {formatBytes(sending.total)}
          <progress max={sending.total || 1} value={sending.sent} />
        </p>
      )}
      {outcomes.map((outcome, index) =>
        'job' in outcome ? (
          <Notice kind="info" key={index}>
            <strong>{outcome.file}</strong> uploaded, job queued. Status URL:{' '}
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
