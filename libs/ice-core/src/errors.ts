/**
 * Domain errors: every failure a user can cause carries a stable code, so that the CLI, the
 * API's exception filter and the workers report it the same way (and map it to HTTP in one place).
 */
export type IceErrorCode =
  | 'WEIGHTS_FORMAT' // a weights file that is not what it claims to be (corrupt header, truncated data)
  | 'WEIGHTS_MISMATCH' // names or shapes do not match the model
  | 'CONFIG_INVALID' // a model/training configuration that cannot work
  | 'FILE_NOT_FOUND'
  | 'INPUT_INVALID' // a tensor or argument of the wrong shape/type
  | 'NON_FINITE_LOSS' // NaN/Inf during training
  | 'BACKEND_UNAVAILABLE'
  | 'CHECKPOINT_INVALID'
  | 'CANCELLED' // a run stopped on request
  | 'RANK_TIMEOUT' // a data-parallel rank waited too long for the other ranks' gradients
  | 'IMAGE_CORRUPT'; // an image file that exists but cannot be decoded (pipelines skip and count these)

export class IceError extends Error {
  constructor(
    readonly code: IceErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'IceError';
  }
}
