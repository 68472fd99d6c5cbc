import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';

/**
 * Whether a request may come from the page that sent it: no `Origin` at all (curl, servers,
 * mobile apps: not a browser acting for a visitor), the service's own origin (the playground),
 * or one of `allowed` (CORS_ORIGINS). "Own" means the Origin's host and port are the `Host`
 * header's, which is what the browser connected to; the scheme is not compared, so a TLS
 * proxy in front does not lock the playground out.
 */
export function isAllowedOrigin(headers: IncomingHttpHeaders, allowed: readonly string[]): boolean {
  const origin = headers.origin;
  if (origin === undefined) return true;
  if (allowed.includes(origin)) return true;
  if (!headers.host) return false;
  try {
    const parsed = new URL(origin);
    // Through URL, so that `example.com:443` and `https://example.com` compare equal.
    return parsed.host === new URL(`${parsed.protocol}//${headers.host}`).host;
  } catch {
    // `Origin: null` (sandboxed frames, file: pages) and anything else that is no URL.
    return false;
  }
}

const ALLOWED_METHODS = 'GET, POST, OPTIONS';

/**
 * CORS for the origins in CORS_ORIGINS, and for no other: a browser page elsewhere (Apollo
 * Sandbox, a front end on its own host) may call the API only when listed. Credentials are not
 * allowed: the API has no cookies, and the admin token travels in `Authorization`, which the
 * page sets itself. Apollo's CSRF prevention stays on behind this: a listed origin's requests
 * are preflighted `application/json` POSTs, which it accepts.
 */
export function corsFor(
  allowed: readonly string[],
): (req: IncomingMessage, res: ServerResponse, next: () => void) => void {
  // Node's own request and response only: Express mounts it, and so does the plain POST path (http.ts).
  return (req, res, next) => {
    const vary = res.getHeader('vary');
    if (vary === undefined) res.setHeader('vary', 'Origin');
    else if (!/\borigin\b/i.test(String(vary))) res.setHeader('vary', `${String(vary)}, Origin`);
    const origin = req.headers.origin;
    if (origin === undefined || !allowed.includes(origin)) {
      next();
      return;
    }
    res.setHeader('access-control-allow-origin', origin);
    if (req.method !== 'OPTIONS') {
      next();
      return;
    }
    // A preflight: say what the real request may carry, and let the browser remember it.
    res.setHeader('access-control-allow-methods', ALLOWED_METHODS);
    const requested = req.headers['access-control-request-headers'];
    if (requested) res.setHeader('access-control-allow-headers', requested);
    res.setHeader('access-control-max-age', '600');
    res.statusCode = 204;
    res.end();
  };
}
