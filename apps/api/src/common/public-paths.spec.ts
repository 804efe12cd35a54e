import * as path from 'node:path';
import { ArtifactStore, loadOrchestrationConfig } from '@ice/orchestration';
import { PublicPaths } from './public-paths';

describe('PublicPaths', () => {
  const config = loadOrchestrationConfig('api', {
    API_KEYS: 'k',
    CODE_VERSION: 't',
    ARTIFACT_DIR: '/srv/ice/artifacts',
    DATA_ROOTS: '/srv/ice/data,/mnt/datasets',
  });
  const paths = new PublicPaths(config, new ArtifactStore(config.artifactDir));

  it('names files relative to the artifact directory or their data root', () => {
    expect(paths.name('/srv/ice/artifacts/runs/abc/final.safetensors')).toBe(path.join('runs', 'abc', 'final.safetensors'));
    expect(paths.name('/mnt/datasets/voc/VOC2012')).toBe(path.join('voc', 'VOC2012'));
    expect(paths.name('/mnt/datasets')).toBe('.');
    expect(paths.name('runs/abc/final.safetensors')).toBe('runs/abc/final.safetensors');
  });

  it('redacts every string of a JSON body, in messages too, and leaves URLs, numbers, dates and other fields alone', () => {
    const at = new Date(0);
    const body = {
      checkpoint: '/srv/ice/artifacts/runs/abc/final.safetensors',
      config: { run: { model: { weights: '/srv/ice/data/w.pth' }, data: { root: '/mnt/datasets2/x' } } },
      error: "ENOENT: no such file or directory, open '/srv/ice/artifacts/runs/abc/last.safetensors'",
      maps: ['/evaluations/e/maps/0000-ice.png'],
      step: 3,
      at,
    };
    expect(paths.redact(body)).toEqual({
      checkpoint: 'runs/abc/final.safetensors',
      // Another directory that merely starts like a root is not that root (not '2/x'): any other path goes by its name.
      config: { run: { model: { weights: 'w.pth' }, data: { root: 'x' } } },
      error: "ENOENT: no such file or directory, open 'runs/abc/last.safetensors'",
      maps: ['/evaluations/e/maps/0000-ice.png'],
      step: 3,
      at,
    });
    expect(paths.redact('a table\n')).toBe('a table\n');
  });

  it("cuts other absolute file paths to their names in bodies, and keeps them in error messages (the client's own input)", () => {
    const backend = 'wasm; native kernels: dnnl (oneDNN 2.6.3, /lib/x86_64-linux-gnu/libdnnl.so.2, 1 thread)';
    expect(paths.redact({ backend })).toEqual({ backend: 'wasm; native kernels: dnnl (oneDNN 2.6.3, libdnnl.so.2, 1 thread)' });
    expect(paths.redact("Error: ENOENT, open '/opt/x/y.bin'")).toBe("Error: ENOENT, open 'y.bin'");
    expect(paths.redact('see /evaluations/e/maps/a.png and http://h:3000/runs/x')).toBe(
      'see /evaluations/e/maps/a.png and http://h:3000/runs/x',
    );
    const message = 'weights: /etc/passwd is outside the configured data roots';
    expect(paths.redact(message, 'keep')).toBe(message);
    expect(paths.redact('model.weights: /srv/ice/data/w.pth does not exist', 'keep')).toBe('model.weights: w.pth does not exist');
  });
});
