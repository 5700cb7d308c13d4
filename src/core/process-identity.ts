import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

/**
 * A process as the kernel knows it: its pid and, where the kernel tells (Linux), when it
 * started. A pid alone is not enough to tell a process is still the same one: a container's
 * process is pid 1 after every restart, and a pid is reused once its process is reaped.
 */
export interface ProcessId {
  pid: number;
  /** Start time in clock ticks since boot (field 22 of /proc/<pid>/stat); undefined where unknown. */
  start?: string;
}

/** The state and start time of a process from /proc (Linux), or undefined (no such process, or no /proc). */
function procStat(pid: number): { state: string; start: string } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2, the command, is in parentheses and may hold spaces and ')': fields 3… follow the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0]!, start: fields[19]! };
  } catch {
    return undefined;
  }
}

/** The process of this pid as it is now (its start time where the kernel tells). */
export function processIdOf(pid: number): ProcessId {
  return { pid, start: procStat(pid)?.start };
}

export const thisProcess: ProcessId = processIdOf(process.pid);

/**
 * Whether the process still runs: its pid exists, is not a zombie (killed but not yet reaped,
 * which `kill(pid, 0)` still finds), and, where its start time is known, started when it did.
 */
export function isRunning({ pid, start }: ProcessId): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  const stat = procStat(pid);
  if (stat) return stat.state !== 'Z' && stat.state !== 'X' && (start === undefined || stat.start === start);
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** `pid start` as a lock file holds it (a pid alone from older versions). */
export function formatProcessId({ pid, start }: ProcessId): string {
  return start === undefined ? String(pid) : `${pid} ${start}`;
}

export function parseProcessId(text: string): ProcessId | undefined {
  const match = /^\s*(\d+)(?:\s+(\d+))?\s*$/.exec(text);
  if (!match) return undefined;
  return { pid: Number(match[1]), ...(match[2] !== undefined && { start: match[2] }) };
}

/** This machine's name as a file name may hold it. */
const host = hostname().replace(/[^A-Za-z0-9-]/g, '-') || 'host';

/**
 * A name for what a process owns in a shared directory (a partial upload): its host, pid and
 * start time, so another process can tell whether the owner is gone (ownerGone).
 */
export function ownerTagOf({ pid, start }: ProcessId): string {
  return `${host}~${pid}~${start ?? ''}`;
}

export const ownerTag = ownerTagOf(thisProcess);

/**
 * Whether the owner named by a tag is certainly gone: a process of this machine that no longer
 * runs. A tag of another machine (a shared UPLOAD_DIR), or not a tag, tells nothing: false.
 */
export function ownerGone(tag: string): boolean {
  const [tagHost, pid, start] = tag.split('~');
  if (tagHost !== host || pid === undefined || !/^\d+$/.test(pid)) return false;
  if (tag === ownerTag) return false;
  return !isRunning({ pid: Number(pid), start: start || undefined });
}
