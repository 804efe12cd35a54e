import { ArgumentsHost, Catch, HttpException, HttpStatus, Logger, type ExceptionFilter } from '@nestjs/common';
import type { Response } from 'express';
import { IceError, type IceErrorCode } from '@ice/core';
import { PublicPaths } from './public-paths';

/** The one place where domain error codes become HTTP statuses. */
export function httpStatusOf(code: IceErrorCode): number {
  switch (code) {
    case 'CONFIG_INVALID':
    case 'INPUT_INVALID':
    case 'WEIGHTS_FORMAT':
    case 'WEIGHTS_MISMATCH':
    case 'CHECKPOINT_INVALID':
    case 'IMAGE_CORRUPT':
      return HttpStatus.BAD_REQUEST;
    case 'FILE_NOT_FOUND':
      return HttpStatus.NOT_FOUND;
    case 'CANCELLED':
    case 'NO_CAPACITY':
      return HttpStatus.CONFLICT;
    case 'NON_FINITE_LOSS':
      return HttpStatus.UNPROCESSABLE_ENTITY;
    case 'BACKEND_UNAVAILABLE':
    case 'RANK_TIMEOUT':
    case 'RANKS_APART':
      return HttpStatus.SERVICE_UNAVAILABLE;
  }
}

@Catch()
export class IceErrorFilter implements ExceptionFilter {
  private readonly log = new Logger('http');

  /** Messages name server files relative to their root, as bodies do (PublicPaths). */
  constructor(private readonly paths: PublicPaths) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const res = host.switchToHttp().getResponse<Response>();
    if (res.headersSent) return;
    if (exception instanceof IceError) {
      const status = httpStatusOf(exception.code);
      res.status(status).json({ statusCode: status, code: exception.code, message: this.paths.redact(exception.message, 'keep') });
      return;
    }
    if (exception instanceof HttpException) {
      const body = exception.getResponse();
      res
        .status(exception.getStatus())
        .json(this.paths.redact(typeof body === 'string' ? { statusCode: exception.getStatus(), message: body } : body, 'keep'));
      return;
    }
    // Body-parser errors (malformed JSON) carry a status but are not HttpExceptions.
    const status = (exception as { status?: unknown }).status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      res
        .status(status)
        .json({ statusCode: status, code: 'INPUT_INVALID', message: this.paths.redact((exception as Error).message, 'keep') });
      return;
    }
    this.log.error(exception instanceof Error ? (exception.stack ?? exception.message) : String(exception));
    res.status(HttpStatus.INTERNAL_SERVER_ERROR).json({ statusCode: 500, message: 'internal error' });
  }
}
