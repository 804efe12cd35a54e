import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { main } from './main';

/** Exit codes of the local commands and of the command line itself (the remote ones: test/remote-cli.e2e-spec.ts). */
describe('ice exit codes', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ice-exit-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  async function exitCode(args: string[]): Promise<{ code: number; err: string }> {
    const err: string[] = [];
    const spies = [
      jest.spyOn(process.stdout, 'write').mockImplementation(() => true),
      jest.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => (err.push(String(c)), true)),
      jest.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(a.map(String).join(' '))),
    ];
    process.exitCode = undefined;
    try {
      await main(['node', 'ice', ...args]);
      return { code: Number(process.exitCode ?? 0), err: err.join('') };
    } finally {
      process.exitCode = undefined;
      for (const s of spies) s.mockRestore();
    }
  }

  it('0 for help, 2 for a wrong command line', async () => {
    expect((await exitCode(['--help'])).code).toBe(0);
    expect((await exitCode(['frobnicate'])).code).toBe(2);
    expect((await exitCode(['train', '--out', tmp])).code).toBe(2); // --config missing
    expect((await exitCode(['table'])).code).toBe(2);
  });

  it('4 for a missing file, 2 for an invalid config, as the remote commands', async () => {
    expect(await exitCode(['train', '--config', path.join(tmp, 'nope.json'), '--out', tmp])).toMatchObject({
      code: 4,
      err: /FILE_NOT_FOUND/,
    });
    const bad = path.join(tmp, 'bad.json');
    fs.writeFileSync(bad, JSON.stringify({ steps: 0 }));
    expect(await exitCode(['train', '--config', bad, '--out', tmp])).toMatchObject({ code: 2, err: /CONFIG_INVALID: .*steps/ });
  });
});
