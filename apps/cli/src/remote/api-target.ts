/** Where the API is and which key to send: `--api`, ICE_API_URL, the default; ICE_API_KEY. No heavy imports (read by every `ice`). */
import { CliError, EXIT } from './exit-codes';

export const DEFAULT_API_URL = 'http://127.0.0.1:3000';

export interface ApiTarget {
  url: string;
  key: string | undefined;
}

/** `--api` wins over ICE_API_URL, which wins over the default; the key only comes from ICE_API_KEY (never a flag, which `ps` shows). */
export function apiTarget(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): ApiTarget {
  const raw = flag ?? env.ICE_API_URL ?? DEFAULT_API_URL;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliError(EXIT.usage, `--api: ${raw} is not a URL (e.g. ${DEFAULT_API_URL})`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliError(EXIT.usage, `--api: ${raw} is not an http(s) URL`);
  return { url: url.toString().replace(/\/+$/, ''), key: env.ICE_API_KEY || undefined };
}
