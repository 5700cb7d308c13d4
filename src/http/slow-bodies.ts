import type { FastifyInstance } from 'fastify';

/**
 * Cuts off a request body that stalls or trickles: over every window of `windowMs` while the
 * body is still arriving, its connection must deliver at least `minBytesPerSecond` (and at
 * least one byte), and from the second window on at least `minAverageBytesPerSecond` on
 * average since the body began (0: no such bound), so the time a body may take grows with its
 * size (at the defaults, 1 GiB in at most 9 hours, not 12 days at 1 KiB/s), or the request
 * is answered 408 and its connection closed. Whatever the
 * handler was storing is discarded by it, as for any upload cut short. Measured on the
 * socket's byte count, so the body stream itself is left alone.
 */
export function limitSlowBodies(
  scope: FastifyInstance,
  {
    windowMs,
    minBytesPerSecond,
    minAverageBytesPerSecond,
  }: { windowMs: number; minBytesPerSecond: number; minAverageBytesPerSecond: number },
): void {
  const minBytes = Math.max(1, Math.floor((minBytesPerSecond * windowMs) / 1000));
  scope.addHook('onRequest', async (request, reply) => {
    const raw = request.raw;
    if (raw.headers['content-length'] === undefined && raw.headers['transfer-encoding'] === undefined) return;
    const socket = raw.socket;
    let seen = socket.bytesRead;
    const first = seen;
    const started = Date.now();
    const timer = setInterval(() => {
      if (raw.complete || raw.destroyed) return clearInterval(timer);
      const read = socket.bytesRead - seen;
      seen = socket.bytesRead;
      const elapsedMs = Date.now() - started;
      const average = ((seen - first) * 1000) / elapsedMs;
      const slowOnAverage = minAverageBytesPerSecond > 0 && elapsedMs > windowMs * 1.5 && average < minAverageBytesPerSecond;
      if (read >= minBytes && !slowOnAverage) return;
      clearInterval(timer);
      request.log.warn({ read, windowMs, average: Math.round(average) }, 'request body too slow; cut off');
      if (!reply.raw.headersSent) {
        reply.raw.writeHead(408, { 'content-type': 'application/json; charset=utf-8', connection: 'close' });
        reply.raw.end(
          JSON.stringify({
            detail: slowOnAverage
              ? `The request body arrived too slowly (under ${minAverageBytesPerSecond} bytes a second on average, BODY_MIN_AVERAGE_BYTES_PER_SECOND): nothing was kept`
              : `The request body arrived too slowly (under ${minBytesPerSecond} bytes a second over ${windowMs} ms): nothing was kept`,
            code: 'body_timeout',
          }),
        );
      }
      raw.destroy();
    }, windowMs);
    timer.unref();
    raw.once('close', () => clearInterval(timer));
  });
}
