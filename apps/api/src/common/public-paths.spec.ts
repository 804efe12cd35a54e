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
      // Another directory that merely starts like a root is not that root.
      config: { run: { model: { weights: 'w.pth' }, data: { root: '/mnt/datasets2/x' } } },
      error: "ENOENT: no such file or directory, open 'runs/abc/last.safetensors'",
      maps: ['/evaluations/e/maps/0000-ice.png'],
      step: 3,
      at,
    });
    expect(paths.redact('a table\n')).toBe('a table\n');
  });
});
