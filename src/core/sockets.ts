import { readFileSync } from 'node:fs';
import type { Server, Socket } from 'node:net';

/** The soft limit on this process's open files (Linux: /proc/self/limits), or undefined where unknown. */
export function openFilesLimit(): number | undefined {
  try {
    const line = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1];
    return line === undefined || line === 'unlimited' ? undefined : Number(line);
  } catch {
    return undefined;
  }
}

/**
 * Connections the process may hold by default: below its open-files limit by a reserve (a
 * fifth, at least 256) for what else needs a descriptor (database and Redis connections,
 * uploads being written, the embedded database's files), and at most 10,000. Unknown limit:
 * taken as 1024, the usual default.
 */
export function defaultMaxConnections(limit = openFilesLimit() ?? 1024): number {
  return Math.max(64, Math.min(10_000, limit - Math.max(256, Math.floor(limit / 5))));
}

/**
 * Caps the connections a server holds: `max` in all (Node's own cap: a connection past it is
 * closed as soon as it is accepted), and `perAddress` from one client address (0: none), so
 * that a flood of connections (half-sent requests) neither exhausts the process's descriptors
 * nor, from one address, takes every connection from the others.
 */
export function limitConnections(server: Server, { max, perAddress }: { max: number; perAddress: number }): void {
  server.maxConnections = max;
  if (perAddress <= 0) return;
  const byAddress = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? '';
    const count = (byAddress.get(address) ?? 0) + 1;
    if (count > perAddress) {
      socket.destroy();
      return;
    }
    byAddress.set(address, count);
    socket.once('close', () => {
      const left = (byAddress.get(address) ?? 1) - 1;
      if (left > 0) byAddress.set(address, left);
      else byAddress.delete(address);
    });
  });
}
