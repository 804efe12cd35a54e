import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { IceError } from '../errors';
import { moduleBeside, startThread, THREAD_BOOTSTRAP, threadWorkerData } from './thread-start';

const REPO = path.resolve(__dirname, '..', '..', '..', '..');

function outcome(worker: Worker): Promise<{ message?: unknown; error?: Error; code: number }> {
  return new Promise((resolve) => {
    let message: unknown;
    let error: Error | undefined;
    worker.on('message', (m: unknown) => {
      message = m;
    });
    worker.on('error', (e) => {
      error = e;
    });
    worker.on('exit', (code) => resolve({ message, error, code }));
  });
}

describe('startThread', () => {
  it('runs a TypeScript module from source in a thread, with its data, environment and the @ice/* aliases', async () => {
    const entry = path.join(__dirname, 'fixtures', 'echo.thread.ts');
    const r = await outcome(startThread(entry, { data: { value: 21 }, env: { ...process.env, ICE_THREAD_TEST: 'set' } }));
    expect(r.error).toBeUndefined();
    expect(r.message).toEqual({ doubled: 42, env: 'set', iceError: 'CANCELLED' });
    // Nothing else keeps the thread alive: it exits on its own.
    expect(r.code).toBe(0);
  });

  it('runs a JavaScript module as is', async () => {
    const r = await outcome(startThread(path.join(__dirname, 'fixtures', 'echo.thread.js'), { data: [1, 'two'] }));
    expect(r.message).toEqual({ echoed: [1, 'two'], language: 'js' });
  });

  it("reports the module's own error through the Worker", async () => {
    const r = await outcome(startThread(path.join(__dirname, 'fixtures', 'echo.thread.ts'), { data: { value: 1, fail: true } }));
    expect(r.error?.message).toBe('asked to fail');
    expect(r.code).toBe(1);
  });

  it('starts only module files named by absolute path, never code', () => {
    expect(() => threadWorkerData('fixtures/echo.thread.ts')).toThrow(/absolute path/);
    expect(() => threadWorkerData("require('node:fs').rmSync('/')")).toThrow(IceError);
    expect(() => threadWorkerData(path.join(__dirname, 'fixtures', 'missing.thread.ts'))).toThrow(/does not exist/);
    expect(() => threadWorkerData(path.join(__dirname, 'thread.bootstrap.js').replace(/\.js$/, '.json'))).toThrow(/not a module file/);
    expect(threadWorkerData(THREAD_BOOTSTRAP, { a: 1 })).toEqual({ entry: THREAD_BOOTSTRAP, data: { a: 1 } });
  });

  it('names a sibling module with the caller’s own extension (source or build)', () => {
    expect(moduleBeside('/app/src/x/runner.ts', 'task')).toBe('/app/src/x/task.ts');
    expect(moduleBeside('/app/dist/x/runner.js', 'task')).toBe('/app/dist/x/task.js');
  });

  it('is the only way the project starts a thread: no code strings, no eval', () => {
    const offenders: string[] = [];
    const walk = (dir: string): void => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) {
          if (e.name !== 'node_modules' && e.name !== 'fixtures') walk(p);
        } else if (/\.(ts|js)$/.test(e.name) && !e.name.endsWith('.spec.ts')) {
          const src = fs.readFileSync(p, 'utf8');
          // `(?<![.\w])`: a method named eval (ioredis runs Lua scripts with redis.eval) is not JavaScript's eval.
          if (/eval:\s*true|new Function\(|(?<![.\w])eval\(/.test(src)) offenders.push(path.relative(REPO, p));
          if (/new Worker\(/.test(src) && p !== path.join(__dirname, 'thread-start.ts')) offenders.push(path.relative(REPO, p));
        }
      }
    };
    for (const top of ['apps', 'libs', 'bench', 'tools']) walk(path.join(REPO, top));
    expect(offenders).toEqual([]);
  });
});
