import { describe, expect, it } from 'vitest';
import { readEvents, StreamCutError, type SseEvent } from '../src/client/sse.js';

/** A body delivered in the chunks given (as bytes, so a character may be split too). */
function body(...chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(typeof chunk === 'string' ? new TextEncoder().encode(chunk) : chunk);
      controller.close();
    },
  });
}

async function all(stream: ReadableStream<Uint8Array>): Promise<SseEvent[]> {
  const events: SseEvent[] = [];
  for await (const event of readEvents(stream)) events.push(event);
  return events;
}

describe('readEvents (Server-Sent Events)', () => {
  it('reads events, ids and types; skips comments, unknown fields and events without data', async () => {
    const text = ': connected\n\nevent: status\nid: 1\ndata: {"a":1}\n\n: keep-alive\n\nretry: 10\n\nid: 9\n\ndata:no space\nfoo: bar\n\n';
    expect(await all(body(text))).toEqual([
      { event: 'status', id: '1', data: '{"a":1}' },
      { event: 'message', id: undefined, data: 'no space' },
    ]);
  });

  it('joins data lines with LF and takes CR, LF and CRLF line endings, even split across chunks', async () => {
    const bytes = new TextEncoder().encode('data: é one\r\ndata: two\r\r\nevent: x\rdata: three\r\r');
    const cut = bytes.indexOf(0x0a); // inside the first CRLF
    const events = await all(body(bytes.slice(0, 7), bytes.slice(7, cut), bytes.slice(cut)));
    expect(events).toEqual([
      { event: 'message', id: undefined, data: 'é one\ntwo' },
      { event: 'x', id: undefined, data: 'three' },
    ]);
    // Every split point gives the same events.
    for (let i = 1; i < bytes.length; i++) expect(await all(body(bytes.slice(0, i), bytes.slice(i)))).toEqual(events);
  });

  it('a stream that ends inside an event is cut, not an event', async () => {
    await expect(all(body('data: {"a":1}\n\ndata: {"b"'))).rejects.toThrow(StreamCutError);
    expect(await all(body('data: 1\n\n: trailing comment'))).toEqual([{ event: 'message', id: undefined, data: '1' }]);
  });
});
