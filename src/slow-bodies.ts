import type { FastifyInstance } from 'fastify';

/**
 * Cuts off a request body that stalls or trickles: over every window of `windowMs` while the
 * body is still arriving, its connection must deliver at least `minBytesPerSecond` (and at
 * least one byte), or the request is answered 408 and its connection closed. Whatever the
 * handler was storing is discarded by it, as for any upload cut short. Measured on the
 * socket's byte count, so the body stream itself is left alone.
 */
export function limitSlowBodies(scope: FastifyInstance, { windowMs, minBytesPerSecond }: { windowMs: number; minBytesPerSecond: number }): void {
  const minBytes = Math.max(1, Math.floor((minBytesPerSecond * windowMs) / 1000));
  scope.addHook('onRequest', async (request, reply) => {
    const raw = request.raw;
    if (raw.headers['content-length'] === undefined && raw.headers['transfer-encoding'] === undefined) return;
    const socket = raw.socket;
    let seen = socket.bytesRead;
    const timer = setInterval(() => {
      if (raw.complete || raw.destroyed) return clearInterval(timer);
      const read = socket.bytesRead - seen;
      seen = socket.bytesRead;
      if (read >= minBytes) return;
      clearInterval(timer);
      request.log.warn({ read, windowMs }, 'request body too slow; cut off');
      if (!reply.raw.headersSent) {
        reply.raw.writeHead(408, { 'content-type': 'application/json; charset=utf-8', connection: 'close' });
        reply.raw.end(
          JSON.stringify({
            detail: `The request body arrived too slowly (under ${minBytesPerSecond} bytes a second over ${windowMs} ms): nothing was kept`,
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
