/** The BullMQ queues (a light module: the configuration names them without loading the job schemas). */
export const QUEUE_NAMES = ['training', 'evaluation', 'sweeps'] as const;
export type QueueName = (typeof QUEUE_NAMES)[number];

/** The flow producer that adds a sweep (its finalize parent and its runs) in one go. */
export const SWEEP_FLOW = 'sweeps';
