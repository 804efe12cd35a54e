/** One server-sent event: its name ('message' when unnamed) and its data lines joined by newlines. */
export interface SseMessage {
  event: string;
  data: string;
}

/**
 * Parses a text/event-stream body (a fetch Response body) into events as they arrive. Clients of
 * the API's /events endpoints (the demo, the end-to-end tests) share this one parser.
 */
export async function* readSseStream(body: AsyncIterable<Uint8Array>): AsyncGenerator<SseMessage> {
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of body) {
    buf += decoder.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
      }
      if (data.length) yield { event, data: data.join('\n') };
    }
  }
}
