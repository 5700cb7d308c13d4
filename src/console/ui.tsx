import type { ComponentChildren } from 'preact';
import type { Job } from './api.js';
import { formatBytes } from './format.js';
import { onLinkClick } from './router.js';

export function Link({ href, children, class: className }: { href: string; children: ComponentChildren; class?: string }) {
  return (
    <a href={href} class={className} onClick={onLinkClick}>
      {children}
    </a>
  );
}

export function StatusBadge({ status }: { status: Job['status'] }) {
  return (
    <span class={`badge badge-${status}`} data-status={status}>
      {status}
    </span>
  );
}

/** Share of the input read: from byte progress when the size is known, else unknown. */
export function jobFraction(job: Job): number | null {
  if (job.status === 'completed') return 1;
  if (!job.bytes_total) return null;
  return Math.min(1, job.bytes_processed / job.bytes_total);
}

export function ProgressBar({ job, label }: { job: Job; label: string }) {
  const fraction = jobFraction(job);
  const percent = fraction === null ? undefined : Math.floor(fraction * 100);
  const title = job.bytes_total ? `${formatBytes(job.bytes_processed)} of ${formatBytes(job.bytes_total)} read` : undefined;
  return (
    <div
      class={`progress progress-${job.status}`}
      role="progressbar"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={percent}
      title={title}
    >
      <div class="progress-fill" style={{ width: `${percent ?? 0}%` }} />
    </div>
  );
}

export function Notice({ kind, children }: { kind: 'error' | 'info'; children: ComponentChildren }) {
  return (
    <div class={`notice notice-${kind}`} role={kind === 'error' ? 'alert' : 'status'}>
      {children}
    </div>
  );
}

const CELL_CHARS = 60;

/** A value of a row as a table cell: null as nothing, text as is, anything else as JSON; a long one cut, whole on hover. */
export function ValueCell({ value, numeric = false }: { value: unknown; numeric?: boolean }) {
  const text = value === null || value === undefined ? '' : typeof value === 'string' ? value : JSON.stringify(value);
  const long = text.length > CELL_CHARS;
  return (
    <td class={numeric ? 'num' : undefined} title={long ? text : undefined}>
      {long ? `${text.slice(0, CELL_CHARS)}…` : text}
    </td>
  );
}

/** A labelled choice of a form: its options as [value, shown] pairs. */
export function Choice({
  label,
  name,
  value,
  options,
  set,
}: {
  label: string;
  name: string;
  value: string;
  options: readonly (readonly [string, string])[];
  set: (value: string) => void;
}) {
  return (
    <label class="field">
      {label}
      <select name={name} value={value} onChange={(event) => set(event.currentTarget.value)}>
        {options.map(([option, shown]) => (
          <option value={option} key={option}>
            {shown}
          </option>
        ))}
      </select>
    </label>
  );
}

/** A list's values as options, each shown as itself, after `first` (an option meaning "none given"). */
export const optionsOf = (values: readonly string[], first?: readonly [string, string]): (readonly [string, string])[] => [
  ...(first ? [first] : []),
  ...values.map((value) => [value, value] as const),
];
