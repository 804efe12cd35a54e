/** Why a job's AbortSignal fired: a user's cancel ends the run; a shutdown hands the job back. */
export const CANCEL_REASON_USER = 'user-cancel';
export const CANCEL_REASON_SHUTDOWN = 'worker-shutdown';
/** Another rank of the data-parallel run failed for good: this rank stops without writing an outcome. */
export const CANCEL_REASON_GROUP_FAILED = 'group-failed';
