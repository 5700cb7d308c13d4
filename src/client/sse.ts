/**
 * Server-Sent Events read from a fetch response body, for every client of the API (the CLI,
 * the console, the tests). fetch rather than EventSource, which cannot send the Authorization
 * header a token needs. No Node or DOM APIs beyond the WHATWG streams both have.
 */
export interface SseEvent {
  /** The event's type ("message" when the stream names none). */
  event: string;
  data: string;
  id?: string;
}

/** The stream ended in the middle of an event: what was cut is not one. */
export class StreamCutError extends Error {
  constructor() {
    super('the event stream ended inside an event');
    this.name = 'StreamCutError';
  }
}

/**
 * The stream's events as they arrive, parsed as the HTML standard says (line endings CR, LF
 * or CRLF; comments and unknown fields skipped; one space after the colon dropped; data lines
 * joined with LF; an event without data not dispatched). Ends when the server ends the stream;
 * throws StreamCutError if it ends inside an event, or the network error if it breaks.
 */
export async function* readEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = ''; // text after the last event, line endings made LF (but for a final CR)
  try {
    for (;;) {
      const { done, value } = await reader.read();
      // A CR at the end of a chunk may be the first half of a CRLF: it waits for the next chunk,
      // or for the end of the stream, where it ends a line.
      const text = buffer + (done ? decoder.decode() : decoder.decode(value, { stream: true }));
      const complete = !done && text.endsWith('\r') ? text.length - 1 : text.length;
      const lines = text.slice(0, complete).replace(/\r\n?/g, '\n');
      let start = 0;
      for (let end = lines.indexOf('\n\n'); end >= 0; end = lines.indexOf('\n\n', start)) {
        const event = parseBlock(lines.slice(start, end));
        start = end + 2;
        if (event) yield event;
      }
      buffer = lines.slice(start) + text.slice(complete);
      if (done) break;
    }
  } finally {
    reader.releaseLock();
  }
  if (parseBlock(buffer)) throw new StreamCutError();
}

function parseBlock(block: string): SseEvent | undefined {
  let event = 'message';
  let id: string | undefined;
  const data: string[] = [];
  for (const line of block.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'id') id = value;
    else if (field === 'data') data.push(value);
  }
  if (data.length === 0) return undefined;
  return { event, data: data.join('\n'), id };
}
