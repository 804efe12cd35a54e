export * from './evaluation.types';
export * from './evaluation-spec.schema';
export {
  runEvaluation,
  defaultEvalBatch,
  defaultSplit,
  defaultNormalization,
  requestedImgSize,
  VOC_JACCARD_SIZE,
} from './evaluation.runner';
export { formatEvaluationTable, formatEvaluationReport } from './evaluation-table.util';
export { runExplainer, upsampleGrid, type BatchMaps, type MethodMap, type RunExplainerOptions } from './explain.runner';
export { prepareSample, resizeRgb, normalizationStats, blockMean, blockUpsample, type PreparedSample } from './sample-prep.util';
export { mapMask, massValues, minMax, isMaskMethod } from './map-masks.util';
export type { ProtocolSettings, ProtocolDefinition, MethodScorer } from './protocol.types';
export { segmentationProtocol, segmentationPixelMap, SEGMENTATION_COLUMNS } from './segmentation.protocol';
export { jaccardProtocol, jaccardColumns, jaccardTarget } from './jaccard.protocol';
export { corlocProtocol, corlocBox, continuousBox, CORLOC_COLUMNS } from './corloc.protocol';
export { localizationProtocol, localizationColumns, tscamGtBoxes, tscamScoremap, wsolScoremap } from './localization.protocol';
export { jet, overlayRgb, displayMap, writeSavedMaps, type SavedImageMaps } from './save-maps.util';
export {
  runAccuracy,
  formatAccuracyReport,
  ACCURACY_FORMATS,
  type AccuracyFormat,
  type AccuracyOptions,
  type AccuracyResult,
} from './accuracy.runner';
