/**
 * ImageNet in the class-folder layout `<root>/<split>/<wnid>/*.JPEG` (train and val alike), read the
 * way torchvision's ImageFolder does, so indices and labels match a PyTorch reference run:
 * - classes = the split's sub-folder names in Python `sorted()` order (code points);
 * - files = every file below a class folder (recursively, symlinks followed) whose lower-cased name
 *   ends in one of torchvision's IMG_EXTENSIONS, directories visited in sorted full-path order
 *   (`sorted(os.walk(...))`) and files sorted within each directory.
 * Class indices therefore come from each split's own folder list (as in torchvision): a split with a
 * missing class folder would shift the indices — `inspectDataset` reports each split's class count.
 * A flat `val/` (ILSVRC's original layout with a label CSV) must be sorted into wnid folders first.
 *
 * Optional human-readable names come from a synset mapping file (`n01440764 tench, Tinca tinca`, the
 * LOC_synset_mapping.txt / synset_words.txt format), looked up in `<root>` unless a path is given.
 */
import { readdirSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { IceError } from '@ice/core';
import type { VisionSample } from '../dataset.types';
import { decodeImage, probeImage } from '../image/image-io';
import type { EncodedVisionSample } from '../dataset.types';
import { type FileDataset, badLine, checkIndex, compareCodePoints, isDir, isFile, readIndexLines, requireDir } from './dataset-files.util';

/** torchvision.datasets.folder.IMG_EXTENSIONS (sharp cannot decode .ppm/.pgm/.bmp: those files fail as IMAGE_CORRUPT). */
export const IMAGE_FOLDER_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp'];

/** Mapping file names looked for in the root, in this order. */
export const SYNSET_MAPPING_FILES: readonly string[] = ['LOC_synset_mapping.txt', 'synset_words.txt'];

export interface ImageNetFolderOptions {
  /** Apply EXIF orientation when decoding (default true; PIL/torchvision does not). */
  autoOrient?: boolean;
  /** Synset mapping file; FILE_NOT_FOUND if given and missing. Default: the first of SYNSET_MAPPING_FILES in the root. */
  synsetMapping?: string;
}

export interface ImageNetSample extends VisionSample {
  /** WordNet id of the class folder. */
  wnid: string;
  path: string;
}

interface Entry {
  path: string;
  label: number;
}

/** Reads a `wnid name…` mapping file into wnid → name. */
export function readSynsetMapping(path: string): Map<string, string> {
  const map = new Map<string, string>();
  readIndexLines(path, 'synset mapping file').forEach((line, k) => {
    const m = /^(\S+)\s+(.+)$/.exec(line);
    if (!m) throw badLine(path, k + 1, `expected "<wnid> <name>", got "${line}"`);
    map.set(m[1], m[2].trim());
  });
  return map;
}

function listImageFiles(classDir: string): string[] {
  const dirs: string[] = [];
  const walk = (dir: string): void => {
    dirs.push(dir);
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (isDir(p)) walk(p);
    }
  };
  walk(classDir);
  dirs.sort(compareCodePoints);
  const files: string[] = [];
  for (const dir of dirs) {
    const names = readdirSync(dir)
      .filter((n) => IMAGE_FOLDER_EXTENSIONS.some((ext) => n.toLowerCase().endsWith(ext)) && isFile(join(dir, n)))
      .sort(compareCodePoints);
    for (const n of names) files.push(join(dir, n));
  }
  return files;
}

/** Sorted class-folder names of an ImageFolder split directory. */
export function listClassFolders(splitDir: string): string[] {
  return readdirSync(splitDir)
    .filter((n) => isDir(join(splitDir, n)))
    .sort(compareCodePoints);
}

export class ImageNetFolderDataset implements FileDataset<ImageNetSample> {
  readonly format = 'imagenet' as const;
  readonly name = 'imagenet';
  /** WordNet ids in index order. */
  readonly classes: string[];
  /** Names from the mapping file (the wnid where there is none), in index order. */
  readonly classNames: string[];
  readonly length: number;
  /** The mapping file used, if any. */
  readonly synsetMappingPath: string | undefined;
  private readonly entries: Entry[];
  private readonly autoOrient: boolean;

  constructor(
    readonly root: string,
    readonly split: string,
    opts: ImageNetFolderOptions = {},
  ) {
    requireDir(root, 'ImageNet root');
    const splitDir = join(root, split);
    requireDir(splitDir, `ImageNet split "${split}"`);
    this.classes = listClassFolders(splitDir);
    if (this.classes.length === 0) {
      throw new IceError(
        'INPUT_INVALID',
        `no class folders in ${splitDir}: expected ${split}/<wnid>/*.JPEG (a flat val/ must be sorted into wnid folders)`,
        {
          path: splitDir,
        },
      );
    }
    this.entries = [];
    const empty: string[] = [];
    this.classes.forEach((wnid, label) => {
      const files = listImageFiles(join(splitDir, wnid));
      if (files.length === 0) empty.push(wnid);
      for (const path of files) this.entries.push({ path, label });
    });
    if (empty.length > 0) {
      // torchvision's ImageFolder refuses this too (classes without files would still take an index).
      throw new IceError(
        'INPUT_INVALID',
        `no image files in class folder(s) ${empty.slice(0, 5).join(', ')}${empty.length > 5 ? ', …' : ''} of ${splitDir}`,
        {
          path: splitDir,
        },
      );
    }
    this.length = this.entries.length;
    this.autoOrient = opts.autoOrient ?? true;

    this.synsetMappingPath = opts.synsetMapping ?? SYNSET_MAPPING_FILES.map((f) => join(root, f)).find(isFile);
    const mapping = this.synsetMappingPath ? readSynsetMapping(this.synsetMappingPath) : new Map<string, string>();
    this.classNames = this.classes.map((w) => mapping.get(w) ?? w);
  }

  /** Image path of sample i (no decoding). */
  pathOf(i: number): string {
    checkIndex(i, this.length, `imagenet/${this.split}`);
    return this.entries[i].path;
  }

  async get(i: number): Promise<ImageNetSample> {
    checkIndex(i, this.length, `imagenet/${this.split}`);
    const { path, label } = this.entries[i];
    const img = await decodeImage(path, { autoOrient: this.autoOrient });
    return {
      id: `imagenet/${this.split}/${relative(join(this.root, this.split), path).split(sep).join('/')}`,
      image: img.data,
      height: img.height,
      width: img.width,
      label,
      wnid: this.classes[label],
      path,
    };
  }

  /** Sample i with its image read but not decoded (header only: size after orientation). */
  async getEncoded(i: number): Promise<EncodedVisionSample & Omit<ImageNetSample, 'image'>> {
    checkIndex(i, this.length, `imagenet/${this.split}`);
    const { path, label } = this.entries[i];
    const encoded = await probeImage(path, this.autoOrient);
    return {
      id: `imagenet/${this.split}/${relative(join(this.root, this.split), path).split(sep).join('/')}`,
      encoded,
      height: encoded.height,
      width: encoded.width,
      label,
      wnid: this.classes[label],
      path,
    };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
