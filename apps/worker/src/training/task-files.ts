import { moduleBeside } from '@ice/core';

/** Task modules next to this file (the .ts sources, or a build's .js), run with runInThread. */
export const TRAIN_RUN_TASK = moduleBeside(__filename, 'train-run.task');
export const EVALUATE_TASK = moduleBeside(__filename, 'evaluate.task');
