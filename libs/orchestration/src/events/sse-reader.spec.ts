import { Readable } from 'node:stream';
import { readSseStream } from './sse-reader';

function chunks(...parts: string[]): AsyncIterable<Uint8Array> {
  return Readable.from(parts.map((p) => new TextEncoder().encode(p)));
}

describe('readSseStream', () => {
  it('splits events across chunk boundaries, joins data lines and skips comments', async () => {
    const seen = [];
    for await (const e of readSseStream(chunks(': keep-alive\n\n', 'event: run.status\nda', 'ta: {"a":1}\n\n', 'data: x\ndata: y\n\n')))
      seen.push(e);
    expect(seen).toEqual([
      { event: 'run.status', data: '{"a":1}' },
      { event: 'message', data: 'x\ny' },
    ]);
  });
});
