import { timingSafeEqual } from 'node:crypto';
import { CanActivate, ExecutionContext, Inject, Injectable, SetMetadata, UnauthorizedException } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
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

/** The key a request presents: the `x-api-key` header, else HTTP Basic auth with the key as the password (any user name). */
export function presentedKey(req: Request): string | undefined {
  const header = req.header(API_KEY_HEADER);
  if (header) return header;
  const auth = req.header('authorization');
  if (!auth?.startsWith('Basic ')) return undefined;
  const decoded = Buffer.from(auth.slice(6), 'base64').toString('utf8');
  return decoded.slice(decoded.indexOf(':') + 1);
}

const OPEN_READ = 'ice:open-read';

/** Marks a handler or controller whose reads stay open with READ_AUTH=on (the health probe). */
export const OpenRead = (): MethodDecorator & ClassDecorator => SetMetadata(OPEN_READ, true);

/**
 * Every mutating request needs a configured key in `x-api-key`. Reads (GET, HEAD, SSE) are open,
 * unless READ_AUTH=on: then they need the key too (the header, or Basic auth with the key as the
 * password, which a browser page and an EventSource can send), except handlers marked @OpenRead().
 */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(
    @Inject(ORCHESTRATION_CONFIG) private readonly config: OrchestrationConfig,
    private readonly reflector: Reflector,
  ) {}

  canActivate(ctx: ExecutionContext): boolean {
    const req = ctx.switchToHttp().getRequest<Request>();
    if (req.method === 'OPTIONS') return true;
    const read = req.method === 'GET' || req.method === 'HEAD';
    if (read && (!this.config.readAuth || this.reflector.getAllAndOverride<boolean>(OPEN_READ, [ctx.getHandler(), ctx.getClass()])))
      return true;
    const key = read ? presentedKey(req) : req.header(API_KEY_HEADER);
    if (isValidKey(this.config.apiKeys, key)) return true;
    throw new UnauthorizedException(
      read
        ? `a valid API key is required for reads too (READ_AUTH=on): the ${API_KEY_HEADER} header, or Basic auth with the key as password`
        : `a valid API key is required in the ${API_KEY_HEADER} header`,
    );
  }
}

/**
 * The dashboard is a browser page, which cannot add a header to its own requests: besides
 * `x-api-key` it accepts HTTP Basic auth with the key as the password (any user name).
 */
export function dashboardKeyMiddleware(keys: readonly string[]) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (isValidKey(keys, presentedKey(req))) return next();
    res.setHeader('WWW-Authenticate', 'Basic realm="ice queues", charset="UTF-8"');
    res
      .status(401)
      .json({ statusCode: 401, message: `a valid API key is required (${API_KEY_HEADER} header, or Basic auth with the key as password)` });
  };
}
