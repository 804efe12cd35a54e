import { Observable } from 'rxjs';
import type { MessageEvent } from '@nestjs/common';
import type { OrchestrationEvent } from '@ice/orchestration';

/**
 * A server-sent event stream: subscribe to live events first, then send the database snapshot,
 * then the live events that arrived meanwhile, so nothing between the two is lost. The stream
 * ends after a terminal event. Pub/sub can drop messages (a reconnect), so the snapshot is also
 * re-read every `pollMs` and the stream ends when the database says the subject has finished.
 */
export function eventStream(opts: {
  subscribe: (fn: (e: OrchestrationEvent) => void) => Promise<() => Promise<void>>;
  snapshot: () => Promise<OrchestrationEvent[]>;
  isEnd: (e: OrchestrationEvent) => boolean;
  pollMs?: number;
}): Observable<MessageEvent> {
  return new Observable<MessageEvent>((sub) => {
    let off: (() => Promise<void>) | null = null;
    let ready = false;
    let closed = false;
    const buffered: OrchestrationEvent[] = [];
    const emit = (e: OrchestrationEvent): void => {
      if (closed) return;
      sub.next({ type: e.type, data: e });
      if (opts.isEnd(e)) {
        closed = true;
        sub.complete();
      }
    };
    const poll = setInterval(() => {
      opts.snapshot().then(
        (events) => {
          const end = events.find((e) => opts.isEnd(e));
          if (end) emit(end);
        },
        () => undefined,
      );
    }, opts.pollMs ?? 5000);
    opts
      .subscribe((e) => (ready ? emit(e) : buffered.push(e)))
      .then(async (unsubscribe) => {
        off = unsubscribe;
        if (closed) return void unsubscribe();
        for (const e of await opts.snapshot()) emit(e);
        for (const e of buffered.splice(0)) emit(e);
        ready = true;
      })
      .catch((e: unknown) => sub.error(e));
    return () => {
      closed = true;
      clearInterval(poll);
      if (off) void off();
    };
  });
}
