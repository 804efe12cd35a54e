import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { assertExists, assertInsideRoots, isInside } from './data-roots';

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

  it('names the field in the error, and never lists the roots', () => {
    expect(() => assertInsideRoots('data.root', '/etc', [root])).toThrow(/^data\.root: \/etc is outside the configured data roots$/);
    let message = '';
    try {
      assertInsideRoots('data.root', '/etc', [root]);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).not.toContain(root);
  });

  it('refuses missing files and directories, and the wrong kind', () => {
    const file = path.join(root, 'w.safetensors');
    fs.writeFileSync(file, '');
    expect(() => assertExists('model.weights', file, 'file')).not.toThrow();
    expect(() => assertExists('data.root', root, 'dir')).not.toThrow();
    expect(() => assertExists('model.weights', path.join(root, 'nope.pth'), 'file')).toThrow(
      /^model\.weights: .*nope\.pth does not exist$/,
    );
    expect(() => assertExists('model.weights', root, 'file')).toThrow(/is not a file$/);
    expect(() => assertExists('data.root', file, 'dir')).toThrow(/is not a directory$/);
  });
});
