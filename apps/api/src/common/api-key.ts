import { timingSafeEqual } from 'node:crypto';
import { CanActivate, ExecutionContext, Inject, Injectable, UnauthorizedException } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import { ORCHESTRATION_CONFIG, type OrchestrationConfig } from '@ice/orchestration';

export const API_KEY_HEADER = 'x-api-key';

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export function isValidKey(keys: readonly string[], presented: string | undefined): boolean {
  return presented !== undefined && keys.some((k) => safeEqual(k, presented));
}

/** Every mutating request needs a configured key in `x-api-key`; reads stay open. */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(@Inject(ORCHESTRATION_CONFIG) private readonly config: OrchestrationConfig) {}

  canActivate(ctx: ExecutionContext): boolean {
    const req = ctx.switchToHttp().getRequest<Request>();
    if (['GET', 'HEAD', 'OPTIONS'].includes(req.method)) return true;
    if (isValidKey(this.config.apiKeys, req.header(API_KEY_HEADER))) return true;
    throw new UnauthorizedException(`a valid API key is required in the ${API_KEY_HEADER} header`);
  }
}

/**
 * The dashboard is a browser page, which cannot add a header to its own requests: besides
 * `x-api-key` it accepts HTTP Basic auth with the key as the password (any user name).
 */
export function dashboardKeyMiddleware(keys: readonly string[]) {
  return (req: Request, res: Response, next: NextFunction): void => {
    let presented = req.header(API_KEY_HEADER);
    const auth = req.header('authorization');
    if (!presented && auth?.startsWith('Basic ')) {
      const decoded = Buffer.from(auth.slice(6), 'base64').toString('utf8');
      presented = decoded.slice(decoded.indexOf(':') + 1);
    }
    if (isValidKey(keys, presented)) return next();
    res.setHeader('WWW-Authenticate', 'Basic realm="ice queues", charset="UTF-8"');
    res
      .status(401)
      .json({ statusCode: 401, message: `a valid API key is required (${API_KEY_HEADER} header, or Basic auth with the key as password)` });
  };
}
