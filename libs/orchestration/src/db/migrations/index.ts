import { Init1764403200000 } from './1764403200000-init.migration';
import { EvaluationResults1764576000000 } from './1764576000000-evaluation-results.migration';
import { StatusChangedAt1765065600000 } from './1765065600000-status-changed-at.migration';

/** Migrations in order; listed as classes (not globs) so that source, dist and jest all load them. */
export const MIGRATIONS = [Init1764403200000, EvaluationResults1764576000000, StatusChangedAt1765065600000];
