import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { assertInsideRoots, isInside } from './data-roots';

describe('data roots', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'roots-'));
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  it('accepts the root and paths below it', () => {
    expect(isInside(root, root)).toBe(true);
    expect(isInside(root, path.join(root, 'voc', 'images'))).toBe(true);
  });

  it('rejects siblings, parents and .. escapes', () => {
    expect(isInside(root, path.dirname(root))).toBe(false);
    expect(isInside(root, `${root}-other`)).toBe(false);
    expect(isInside(root, path.join(root, '..', 'etc'))).toBe(false);
  });

  it('follows symlinks that leave the root', () => {
    const link = path.join(root, 'escape');
    fs.symlinkSync(os.tmpdir(), link);
    expect(isInside(root, link)).toBe(false);
  });

  it('names the field in the error', () => {
    expect(() => assertInsideRoots('data.root', '/etc', [root])).toThrow(/^data\.root: \/etc is outside/);
  });
});
