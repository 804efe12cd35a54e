/**
 * Test support for the evaluation specs: a tiny ICE ViT saved as safetensors, and small data
 * sets written in their REAL on-disk formats (ImageNet-Segmentation .mat via h5wasm, VOC with
 * JPEGs, palette PNG masks and XML, CUB's text files). Each image is a plain background with one
 * or two coloured rectangles (the objects), so masks and boxes are known exactly.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { encode as encodePng } from 'fast-png';
import sharp from 'sharp';
import { type ExplainerName, IceVit, ICE_CONFIG_METADATA, vitConfig, type VitConfig, writeSafetensors } from '@ice/core';
import { vocColormap, writeImageNetSegMat } from '@ice/datasets';
import type { MethodMap } from '../explain.runner';
import type { ProtocolSettings } from '../protocol.types';
import type { PreparedSample } from '../sample-prep.util';

export function makeTempDir(prefix = 'ice-eval-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

function ensureDir(file: string): void {
  mkdirSync(dirname(file), { recursive: true });
}

/** Protocol settings for hand-made cases: S = size, p = patch, the defaults of runEvaluation otherwise. */
export function protocolSettings(size: number, patch: number, overrides: Partial<ProtocolSettings> = {}): ProtocolSettings {
  return {
    targetSource: 'cls',
    size,
    patch,
    grid: size / patch,
    rolloutStartLayer: 0,
    excludeVoid: false,
    taus: [0.9, 0.8, 0.6],
    jaccardHeads: 'max',
    corlocMask: 'mass',
    corlocTau: 0.6,
    camThreshold: 0.1,
    strictTop1: true,
    maxBoxAccIous: [0.5],
    ...overrides,
  };
}

/** A method's patch-grid map as runExplainer returns it. */
export function gridMap(method: ExplainerName, grid: readonly number[], g: number, heads?: number[][]): MethodMap {
  return { method, g, grid: Float32Array.from(grid), targetClass: 0, ...(heads ? { heads: heads.map((h) => Float32Array.from(h)) } : {}) };
}

/** A prepared sample with only the fields the scorers read. */
export function preparedSample(size: number, fields: Partial<PreparedSample> = {}): PreparedSample {
  return {
    index: 0,
    id: 'test/0',
    label: -1,
    size,
    rgb: new Float32Array(size * size * 3),
    input: new Float32Array(0),
    height: size,
    width: size,
    ...fields,
  };
}

export interface TinyModelOptions {
  overrides?: Partial<VitConfig>;
  seed?: number;
  /** Zero the official ICE head: every patch ties, argmax picks class 0, so the ICE mask is all foreground. */
  zeroIceHead?: boolean;
  /** Add AdamW moment tensors as the project's training checkpoints store them (optimizer.exp_avg.<name>). */
  withOptimizerKeys?: boolean;
}

/** digits-micro (32², 8×8 patches, 4×4 grid, 2 blocks, 10 classes) with random weights, saved with its config. */
export async function writeTinyModel(file: string, opts: TinyModelOptions = {}): Promise<VitConfig> {
  const config = vitConfig('digits-micro', opts.overrides ?? {});
  const model = IceVit.create(config, opts.seed ?? 1);
  try {
    const sd = await model.stateDict();
    if (opts.zeroIceHead) {
      const w = sd.get('mlp_head.weight');
      if (!w) throw new Error('the model has no official ICE head');
      sd.set('mlp_head.weight', { ...w, data: new Float32Array((w.data as Float32Array).length) });
    }
    if (opts.withOptimizerKeys) {
      for (const [name, rec] of [...sd])
        sd.set(`optimizer.exp_avg.${name}`, { ...rec, data: new Float32Array((rec.data as Float32Array).length) });
    }
    ensureDir(file);
    writeSafetensors(file, sd, { format: 'pt', [ICE_CONFIG_METADATA]: JSON.stringify(config) });
    return config;
  } finally {
    model.dispose();
  }
}

export interface Rect {
  /** Inclusive pixel box [x0, y0, x1, y1]. */
  box: [number, number, number, number];
  /** VOC label index (1-based class) for masks; 1 by default. */
  label?: number;
  rgb?: [number, number, number];
}

export interface SceneSpec {
  height: number;
  width: number;
  background?: [number, number, number];
  objects: Rect[];
  /** Pixels set to 255 (void) in VOC masks: inclusive boxes. */
  voids?: [number, number, number, number][];
}

/** H×W×3 uint8 image and H×W label map (0 background, object labels, 255 void). */
export function renderScene(s: SceneSpec): { rgb: Uint8Array; labels: Uint8Array } {
  const rgb = new Uint8Array(s.height * s.width * 3);
  const labels = new Uint8Array(s.height * s.width);
  const bg = s.background ?? [30, 60, 90];
  for (let i = 0; i < s.height * s.width; i++) rgb.set(bg, i * 3);
  for (const o of s.objects) {
    const [x0, y0, x1, y1] = o.box;
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        rgb.set(o.rgb ?? [240, 200, 40], (y * s.width + x) * 3);
        labels[y * s.width + x] = o.label ?? 1;
      }
    }
  }
  for (const [x0, y0, x1, y1] of s.voids ?? []) for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) labels[y * s.width + x] = 255;
  return { rgb, labels };
}

async function writeJpeg(file: string, rgb: Uint8Array, height: number, width: number): Promise<void> {
  ensureDir(file);
  await sharp(Buffer.from(rgb), { raw: { width, height, channels: 3 } })
    .jpeg({ quality: 100, chromaSubsampling: '4:4:4' })
    .toFile(file);
}

const VOC_NAMES = ['aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow'];

/**
 * A VOC2012-layout root: JPEGImages, SegmentationClass (palette PNGs), Annotations (XML, 1-based
 * boxes = inclusive + 1), ImageSets/Main and ImageSets/Segmentation lists for `split`.
 */
export async function writeVoc(root: string, scenes: SceneSpec[], split = 'val'): Promise<string[]> {
  const ids = scenes.map((_, i) => `2012_${String(i).padStart(6, '0')}`);
  for (const [i, s] of scenes.entries()) {
    const { rgb, labels } = renderScene(s);
    await writeJpeg(join(root, 'JPEGImages', `${ids[i]}.jpg`), rgb, s.height, s.width);
    const png = join(root, 'SegmentationClass', `${ids[i]}.png`);
    ensureDir(png);
    writeFileSync(png, encodePng({ width: s.width, height: s.height, data: labels, depth: 8, channels: 1, palette: vocColormap() }));
    const objects = s.objects
      .map((o) => {
        const name = VOC_NAMES[(o.label ?? 1) - 1];
        const [x0, y0, x1, y1] = o.box.map((v) => v + 1);
        const box = `<bndbox><xmin>${x0}</xmin><ymin>${y0}</ymin><xmax>${x1}</xmax><ymax>${y1}</ymax></bndbox>`;
        return `<object><name>${name}</name><difficult>0</difficult>${box}</object>`;
      })
      .join('');
    const xml = join(root, 'Annotations', `${ids[i]}.xml`);
    ensureDir(xml);
    writeFileSync(
      xml,
      `<annotation><filename>${ids[i]}.jpg</filename><size><width>${s.width}</width><height>${s.height}</height><depth>3</depth></size>${objects}</annotation>`,
    );
  }
  for (const task of ['Main', 'Segmentation']) {
    const list = join(root, 'ImageSets', task, `${split}.txt`);
    ensureDir(list);
    writeFileSync(list, ids.join('\n') + '\n');
  }
  return ids;
}

export interface CubSpec extends SceneSpec {
  /** 0-based class. */
  label: number;
  /** [x, y, w, h] as written in bounding_boxes.txt (default from the first object's inclusive box). */
  xywh?: [number, number, number, number];
}

/** A CUB_200_2011-layout root with `classes` classes; every scene goes to the test split. */
export async function writeCub(root: string, scenes: CubSpec[], classes = 10): Promise<void> {
  const lines = { images: [] as string[], labels: [] as string[], boxes: [] as string[], split: [] as string[] };
  for (const [i, s] of scenes.entries()) {
    const id = i + 1;
    const rel = `${String(s.label + 1).padStart(3, '0')}.class/img_${id}.jpg`;
    const { rgb } = renderScene(s);
    await writeJpeg(join(root, 'images', rel), rgb, s.height, s.width);
    const [x0, y0, x1, y1] = s.objects[0].box;
    const xywh = s.xywh ?? [x0, y0, x1 - x0 + 1, y1 - y0 + 1];
    lines.images.push(`${id} ${rel}`);
    lines.labels.push(`${id} ${s.label + 1}`);
    lines.boxes.push(`${id} ${xywh.map((v) => v.toFixed(1)).join(' ')}`);
    lines.split.push(`${id} 0`);
  }
  const classLines = Array.from({ length: classes }, (_, k) => `${k + 1} ${String(k + 1).padStart(3, '0')}.class`);
  const put = (name: string, rows: string[]): void => {
    ensureDir(join(root, name));
    writeFileSync(join(root, name), rows.join('\n') + '\n');
  };
  put('images.txt', lines.images);
  put('image_class_labels.txt', lines.labels);
  put('bounding_boxes.txt', lines.boxes);
  put('train_test_split.txt', lines.split);
  put('classes.txt', classLines);
}

/** gtsegs_ijcv.mat as MATLAB v7.3 writes it (see writeImageNetSegMat): one sample a scene, every labelled pixel foreground. */
export async function writeImageNetSeg(file: string, scenes: SceneSpec[]): Promise<void> {
  await writeImageNetSegMat(
    file,
    scenes.map((s) => {
      const { rgb, labels } = renderScene(s);
      return { rgb, mask: labels.map((l) => (l !== 0 ? 1 : 0)), height: s.height, width: s.width };
    }),
  );
}
