import * as path from 'node:path';

/** Task modules next to this file, as .ts when running from source and .js from a build. */
const ext = __filename.endsWith('.ts') ? '.ts' : '.js';
export const TRAIN_RUN_TASK = path.join(__dirname, `train-run.task${ext}`);
export const EVALUATE_TASK = path.join(__dirname, `evaluate.task${ext}`);
