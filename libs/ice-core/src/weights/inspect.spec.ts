import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { inspectStateDict, inspectWeights } from './inspect';
import { StateDict, numel } from './state-dict';
import { detectWeightsFormat, readWeights } from './weights-file';

const GOLDEN = path.resolve(__dirname, '../../../../../shared/golden');
const golden = (f: string): string => path.join(GOLDEN, f);

const BACKBONE_PARAMS = 114_250; // golden-micro backbone + CLS head (README table)

describe('readWeights', () => {
  it('dispatches on magic bytes, not extensions', () => {
    const st = readWeights(golden('golden-micro.safetensors'));
    const pth = readWeights(golden('golden-micro.pth'));
    expect(st.format).toBe('safetensors');
    expect(pth.format).toBe('pth');
    expect(pth.stateDictKey).toBe('model');
    expect(pth.metadata).toEqual({});
    expect([...pth.tensors.keys()]).toEqual([...st.tensors.keys()]);

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ice-wf-'));
    try {
      const renamed = path.join(dir, 'weights.bin');
      fs.copyFileSync(golden('golden-micro.pth'), renamed);
      expect(readWeights(renamed).format).toBe('pth');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(detectWeightsFormat(Uint8Array.from([0x80, 0x02]))).toBe('pth');
    expect(detectWeightsFormat(Uint8Array.from([0x10, 0, 0, 0, 0, 0, 0, 0]))).toBe('safetensors');
  });

  it('FILE_NOT_FOUND for missing paths and directories; WEIGHTS_FORMAT for a legacy torch file', () => {
    expect(() => readWeights('/nonexistent/w.safetensors')).toThrow(expect.objectContaining({ code: 'FILE_NOT_FOUND' }) as Error);
    expect(() => readWeights(GOLDEN)).toThrow(expect.objectContaining({ code: 'FILE_NOT_FOUND' }) as Error);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ice-wf-'));
    try {
      const legacy = path.join(dir, 'old.pth');
      fs.writeFileSync(legacy, Uint8Array.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]));
      expect(() => readWeights(legacy)).toThrow(
        expect.objectContaining({ code: 'WEIGHTS_FORMAT', message: expect.stringMatching(/old\.pth: legacy/) as string }) as Error,
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('inspectWeights', () => {
  it.each([
    ['golden-micro.safetensors', 'official', 114_954, null, 704, 33],
    ['golden-micro-icef.safetensors', 'icef', 133_706, 256, 19_456, 35],
    ['golden-micro-paper.safetensors', 'paper', 119_125, 64, 4_875, 36],
  ] as const)('%s: ViT architecture and the %s ICE head', (file, kind, total, hidden, iceParams, count) => {
    const r = inspectWeights(golden(file));
    expect(r.format).toBe('safetensors');
    expect(r.tensors).toHaveLength(count);
    expect(r.tensors[0]).toEqual({ name: 'cls_token', dtype: 'F32', shape: [1, 1, 64], numel: 64 });
    expect(r.totalParams).toBe(total);
    expect(r.unrecognized).toEqual([]);
    expect(r.recognized).toMatchObject({
      family: 'vit',
      embedDim: 64,
      depth: 2,
      heads: 2,
      headsSource: 'metadata',
      mlpHidden: 256,
      patchSize: 8,
      inChans: 3,
      posTokens: 17,
      prefixTokens: 1,
      gridSize: 4,
      numClasses: 10,
      distilled: false,
      backboneParams: BACKBONE_PARAMS,
      iceHead: { kind, outputs: 11, hidden, params: iceParams },
    });
    expect(JSON.parse(JSON.stringify(r))).toEqual(r); // JSON-able as is
  });

  it('golden-micro.pth: same architecture; heads unknown without a config', () => {
    const r = inspectWeights(golden('golden-micro.pth'));
    expect(r.format).toBe('pth');
    expect(r.stateDictKey).toBe('model');
    expect(r.totalParams).toBe(114_954);
    expect(r.recognized).toMatchObject({
      embedDim: 64,
      depth: 2,
      heads: null,
      headsSource: 'unknown',
      iceHead: { kind: 'official', outputs: 11 },
    });
    expect(r.notes.join(' ')).toMatch(/heads unknown/);
  });
});

function fakeVit(D: number, depth: number, extra: Record<string, number[]> = {}): StateDict {
  const shapes: Record<string, number[]> = {
    cls_token: [1, 1, D],
    dist_token: [1, 1, D],
    pos_embed: [1, 198, D],
    'patch_embed.proj.weight': [D, 3, 16, 16],
    'patch_embed.proj.bias': [D],
    'norm.weight': [D],
    'norm.bias': [D],
    'head.weight': [1000, D],
    'head.bias': [1000],
    'head_dist.weight': [1000, D],
    'head_dist.bias': [1000],
    ...extra,
  };
  for (let i = 0; i < depth; i++) {
    Object.assign(shapes, {
      [`blocks.${i}.norm1.weight`]: [D],
      [`blocks.${i}.attn.qkv.weight`]: [3 * D, D],
      [`blocks.${i}.mlp.fc1.weight`]: [4 * D, D],
      [`blocks.${i}.mlp.fc2.weight`]: [D, 4 * D],
    });
  }
  const sd: StateDict = new Map();
  for (const [k, s] of Object.entries(shapes)) sd.set(k, { dtype: 'F32', shape: s, data: new Float32Array(numel(s)) });
  return sd;
}

describe('inspectStateDict (synthetic)', () => {
  it('recognises a distilled DeiT-Tiny, infers heads from timm presets and lists unknown keys', () => {
    const r = inspectStateDict('deit.pth', 'pth', fakeVit(192, 3, { 'extra.thing': [5] }));
    expect(r.recognized).toMatchObject({
      embedDim: 192,
      depth: 3,
      heads: 3,
      headsSource: 'inferred',
      mlpHidden: 768,
      patchSize: 16,
      posTokens: 198,
      prefixTokens: 2,
      gridSize: 14,
      numClasses: 1000,
      distilled: true,
      iceHead: { kind: 'none', outputs: null, hidden: null, params: 0 },
    });
    expect(r.notes.join(' ')).toMatch(/heads = 3 inferred from embedDim 192/);
    expect(r.unrecognized).toEqual(['extra.thing']);
  });

  it('DeiT-S with the official ICE head (1001 outputs)', () => {
    const r = inspectStateDict('ice.pth', 'pth', fakeVit(384, 1, { 'mlp_head.weight': [1001, 384] }));
    expect(r.recognized).toMatchObject({ heads: 6, iceHead: { kind: 'official', outputs: 1001, params: 1001 * 384 } });
  });

  it('does not recognise a non-ViT state dict', () => {
    const sd: StateDict = new Map([['conv1.weight', { dtype: 'F32', shape: [8, 3, 3, 3], data: new Float32Array(216) }]]);
    const r = inspectStateDict('resnet.pth', 'pth', sd);
    expect(r.recognized).toBeNull();
    expect(r.unrecognized).toEqual(['conv1.weight']);
    expect(r.totalParams).toBe(216);
  });
});
