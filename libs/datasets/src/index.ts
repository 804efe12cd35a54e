export * from './dataset.types';
export {
  DIGIT_PIXELS,
  DIGIT_SIZE,
  DIGIT_SPLITS,
  NUM_DIGIT_CLASSES,
  MnistSource,
  digitId,
  digitSplitOf,
  loadMnistSource,
  type DigitRef,
  type DigitSplit,
} from './digits/mnist-source';
export {
  DIGITS_DEFAULTS,
  DIGIT_CLASSES,
  DigitsDataset,
  batchNCHW,
  resizeBilinear,
  type DigitsConfig,
  type DigitsOptions,
  type DigitsSample,
} from './digits/digits.dataset';
export * from './image/image-io';
export * from './image/pil-resample';
export * from './formats/dataset-files.util';
export { Hdf5Reader, type Hdf5Array, type Hdf5Data } from './formats/hdf5.reader';
export * from './formats/imagenet-folder.dataset';
export * from './formats/imagenet-seg.dataset';
// Writing gtsegs_ijcv.mat (fixtures, small hand-made sets); spawns its h5wasm worker only when called.
export { writeImageNetSegMat, type ImageNetSegMatSample, type WriteImageNetSegMatOptions } from './formats/imagenet-seg.writer';
export * from './formats/voc.dataset';
export * from './formats/cub.dataset';
export * from './formats/open-dataset';
export * from './transforms/geometry.transform';
export * from './transforms/augment.transform';
export * from './pipeline/pipeline.types';
export {
  PIPELINE_FORMATS,
  datasetSpecKey,
  epochBatches,
  epochOrder,
  openDatasetSpec,
  sampleSeed,
  validateDatasetSpec,
  type OpenedDataset,
} from './pipeline/dataset-spec.util';
export { BatchBuilder } from './pipeline/batch.builder';
export * from './pipeline/batch.loader';
export * from './export/voc-export';
