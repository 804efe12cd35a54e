/** Why a job's AbortSignal fired: a user's cancel ends the run; a shutdown hands the job back. */
export const CANCEL_REASON_USER = 'user-cancel';
export const CANCEL_REASON_SHUTDOWN = 'worker-shutdown';
