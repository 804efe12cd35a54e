/**
 * The contract every dataset of this library meets (built-in digits now; ImageNet, VOC, CUB later),
 * so training, sweeps and explainability evaluation take any of them unchanged.
 */

/** An axis-aligned box [xmin, ymin, xmax, ymax] in pixels, inclusive on both ends. */
export type Box = [number, number, number, number];

export interface VisionSample {
  /** Stable across runs: the same dataset, split and index give the same id. */
  id: string;
  /** RGB, HWC, float32 in [0, 1] (normalisation is the batcher's job, per model preset). */
  image: Float32Array;
  height: number;
  width: number;
  /** Class index into the dataset's `classes`. */
  label: number;
  /** H×W foreground mask (1 = object), when the dataset has one. */
  mask?: Uint8Array;
  /** Object boxes, when the dataset has them. */
  boxes?: Box[];
}

export interface VisionDataset<S extends VisionSample = VisionSample> {
  readonly name: string;
  /** Usually 'train' | 'val' | 'test'; left open because some formats name theirs differently. */
  readonly split: string;
  readonly classes: string[];
  readonly length: number;
  /** Async allowed: file-backed datasets decode on demand. */
  get(i: number): S | Promise<S>;
}

/**
 * A sample whose image is still encoded (file bytes + displayed size): everything else as in
 * {@link VisionSample}. The training pipeline decodes, crops and resizes it in one native step.
 */
export interface EncodedVisionSample extends Omit<VisionSample, 'image'> {
  encoded: import('./image/image-io').EncodedImage;
}

/** A dataset that can hand out its samples undecoded (the file-backed image formats). */
export interface EncodedSampleSource {
  getEncoded(i: number): Promise<EncodedVisionSample>;
}
