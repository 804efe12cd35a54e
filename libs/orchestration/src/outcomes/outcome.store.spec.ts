import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ArtifactStore } from '../artifacts/artifact-store';
import { OutcomeStore, writeFileAtomic } from './outcome.store';

const RUN = '00000000-0000-4000-8000-0000000000aa';

describe('OutcomeStore', () => {
  let root: string;
  let store: OutcomeStore;
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'outcomes-'));
    store = new OutcomeStore(new ArtifactStore(root));
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  const finish = () => ({
    metrics: { top1: 0.5, iou_fg: 0.25 },
    checkpoint: path.join(root, 'runs', RUN, 'final.safetensors'),
    lastCheckpoint: path.join(root, 'runs', RUN, 'last.safetensors'),
    steps: 6,
    resumedFromStep: 3,
    backend: 'wasm',
    durationMs: 1234.4,
  });

  it('has nothing for a run that never finished', () => {
    expect(store.read(RUN)).toBeNull();
  });

  it('keeps the outcome beside the checkpoint with artifact-relative paths, and gives it back as written', () => {
    store.write(RUN, finish(), new Date('2026-01-01T00:00:00Z'));
    const raw = JSON.parse(fs.readFileSync(path.join(root, 'runs', RUN, 'outcome.json'), 'utf8')) as Record<string, unknown>;
    expect(raw).toMatchObject({
      checkpoint: `runs/${RUN}/final.safetensors`,
      lastCheckpoint: `runs/${RUN}/last.safetensors`,
      durationMs: 1234,
    });
    const back = store.read(RUN)!;
    expect(back.finishedAt).toBe('2026-01-01T00:00:00.000Z');
    expect(store.toFinish(back)).toEqual({ ...finish(), durationMs: 1234 });
  });

  it('leaves no temporary file behind', () => {
    store.write(RUN, finish());
    expect(fs.readdirSync(path.join(root, 'runs', RUN))).toEqual(['outcome.json']);
  });

  it('refuses a final weights path outside the artifact directory', () => {
    expect(() => store.write(RUN, { ...finish(), checkpoint: '/etc/passwd' })).toThrow(/not inside the artifact directory/);
  });

  it('names the file when it is corrupt or belongs to another run, instead of ignoring it', () => {
    const file = store.file(RUN);
    writeFileAtomic(file, '{"version":1,');
    expect(() => store.read(RUN)).toThrow(new RegExp(`run outcome ${file} is not JSON`));
    const other = '00000000-0000-4000-8000-0000000000bb';
    store.write(other, { ...finish(), checkpoint: path.join(root, 'runs', other, 'final.safetensors'), lastCheckpoint: null });
    fs.copyFileSync(store.file(other), file);
    expect(() => store.read(RUN)).toThrow(/belongs to run 00000000-0000-4000-8000-0000000000bb/);
    writeFileAtomic(file, JSON.stringify({ version: 1, runId: RUN, status: 'succeeded' }));
    expect(() => store.read(RUN)).toThrow(/metrics/);
  });
});
