import * as path from 'node:path';
import { IceError } from '@ice/core';
import { runInThread } from './thread-runner';

const spin = path.join(__dirname, 'fixtures', 'spin.task.ts');
const fail = path.join(__dirname, 'fixtures', 'fail.task.ts');

describe('runInThread', () => {
  it('runs the task off the event loop and relays its messages in order', async () => {
    const seen: number[] = [];
    let ticks = 0;
    const timer = setInterval(() => ticks++, 20);
    const out = await runInThread<unknown, { slices: number }, { slice: number }>(
      spin,
      { totalMs: 600, sliceMs: 100, honourCancel: true },
      { onMessage: (m) => void seen.push(m.slice) },
    );
    clearInterval(timer);
    expect(out.slices).toBeGreaterThanOrEqual(5);
    expect(seen).toEqual(Array.from({ length: out.slices }, (_, i) => i + 1));
    // The parent's timers kept firing while the thread burned CPU.
    expect(ticks).toBeGreaterThan(15);
  });

  it('stops a cooperative task promptly on abort, as CANCELLED', async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort('user'), 300);
    const t0 = Date.now();
    await expect(runInThread(spin, { totalMs: 20_000, sliceMs: 50, honourCancel: true }, { signal: ac.signal })).rejects.toMatchObject({
      code: 'CANCELLED',
    });
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('terminates a task that ignores the cancel after the grace period', async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort('user'), 300);
    const t0 = Date.now();
    await expect(
      runInThread(spin, { totalMs: 20_000, sliceMs: 50, honourCancel: false }, { signal: ac.signal, cancelGraceMs: 500 }),
    ).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('keeps the IceError code of a failing task', async () => {
    const err = await runInThread(fail, { message: 'x' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IceError);
    expect(err).toMatchObject({ code: 'CONFIG_INVALID', message: 'loss.alpha: bad' });
  });
});
