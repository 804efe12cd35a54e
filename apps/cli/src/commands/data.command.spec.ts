import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import { IceError } from '@ice/core';
import { registerDataCommands, runExport, runInspect } from './data.command';

async function runCli(args: string[]): Promise<string> {
  const program = new Command('ice').exitOverride();
  registerDataCommands(program);
  let out = '';
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  try {
    await program.parseAsync(['node', 'ice', ...args]);
  } finally {
    spy.mockRestore();
  }
  return out;
}

describe('ice data', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ice-data-cli-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('inspect --format digits needs no root and prints splits, classes and the foreground fraction', async () => {
    const report = JSON.parse(await runCli(['data', 'inspect', '--format', 'digits', '--fg-cap', '20', '--size', '32']));
    expect(report.format).toBe('digits');
    expect(report.splits.train + report.splits.val + report.splits.test).toBe(10000);
    expect(report.splits.test).toBe(report.splits.val);
    expect(report.classes).toEqual({ count: 10, first: ['0', '1', '2', '3', '4'] });
    expect(report.foreground).toMatchObject({ split: 'test', imagesMeasured: 20, cap: 20 });
    expect(report.meanForegroundFraction).toBeGreaterThan(0.02);
    expect(report.meanForegroundFraction).toBeLessThan(0.6);
  });

  it('export digits --format voc writes a set that inspect --format voc reads back', async () => {
    const out = path.join(tmp, 'voc');
    const result = JSON.parse(
      await runCli(['data', 'export', 'digits', '--format', 'voc', '--out', out, '--split', 'val,test', '--limit', '3', '--size', '32']),
    );
    expect(result).toMatchObject({ splits: { val: 3, test: 3 }, images: 6 });
    const report = JSON.parse(await runCli(['data', 'inspect', '--format', 'voc', '--root', out]));
    expect(report.splits).toEqual({ test: 3, val: 3 });
    expect(report.classes.count).toBe(10);
    expect(report.foreground).toMatchObject({ split: 'val', imagesMeasured: 3 });
  });

  it('names the problem: missing root, unknown format, wrong export target', async () => {
    const code = async (p: Promise<unknown>): Promise<string> =>
      p.then(
        () => 'ok',
        (e: unknown) => (e instanceof IceError ? `${e.code}: ${e.message}` : String(e)),
      );
    expect(await code(runInspect({ format: 'voc' }))).toMatch(/CONFIG_INVALID: --root/);
    expect(await code(runInspect({ format: 'voc', root: path.join(tmp, 'missing') }))).toMatch(/FILE_NOT_FOUND: .*missing/);
    expect(await code(runInspect({ format: 'coco', root: tmp }))).toMatch(
      /CONFIG_INVALID: --format must be one of imagenet, imagenet-seg, voc, cub, digits/,
    );
    expect(await code(runExport('imagenet', { format: 'voc', out: tmp }))).toMatch(/only the built-in 'digits'/);
    expect(await code(runExport('digits', { format: 'coco', out: tmp }))).toMatch(/--format must be 'voc'/);
    expect(await code(runExport('digits', { format: 'voc', out: tmp, split: 'train,dev' }))).toMatch(/'dev' is not a digits split/);
    expect(await code(runExport('digits', { format: 'voc', out: tmp, limit: '0' }))).toMatch(/--limit must be an integer ≥ 1/);
  });
});
