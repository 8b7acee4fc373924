/**
 * Checks on an upgrade request that need no PHP: a valid RFC 6455 handshake
 * and a same-site Origin. Done before php-fpm is asked, so junk costs no
 * worker. Cookies authenticate websockets and browsers send them on
 * cross-site websocket requests too (CSWSH), so the Origin check is on by
 * default.
 */
import { wsfpmError, type WsfpmError } from '../errors.ts';

type Headers = Record<string, string | string[] | undefined>;

const KEY = /^[+/0-9A-Za-z]{22}==$/;

export function checkHandshake(method: string, headers: Headers): WsfpmError | null {
  if (method !== 'GET') return wsfpmError('WSFPM_ERR_BAD_HANDSHAKE', `method ${method}`);
  const upgrade = headers['upgrade'];
  if (typeof upgrade !== 'string' || upgrade.toLowerCase() !== 'websocket') return wsfpmError('WSFPM_ERR_BAD_HANDSHAKE', 'Upgrade is not websocket');
  const key = headers['sec-websocket-key'];
  if (typeof key !== 'string' || !KEY.test(key.trim())) return wsfpmError('WSFPM_ERR_BAD_HANDSHAKE', 'missing or invalid Sec-WebSocket-Key');
  const version = headers['sec-websocket-version'];
  if (version !== '13') return wsfpmError('WSFPM_ERR_BAD_HANDSHAKE', 'Sec-WebSocket-Version must be 13');
  return null;
}

export interface OriginPolicy {
  /** Exact origins (`https://example.com`) allowed besides the request's own host. */
  allow: ReadonlySet<string>;
  /** `*` was configured: any origin. */
  any: boolean;
}

export function parseOriginList(list: string): OriginPolicy {
  const items = list.split(',').map((s) => s.trim()).filter(Boolean);
  return { any: items.includes('*'), allow: new Set(items.filter((s) => s !== '*').map((s) => s.replace(/\/+$/, '').toLowerCase())) };
}

/**
 * Null when allowed. No Origin header: not a browser, so not a CSWSH vector.
 * Otherwise the Origin's host[:port] must equal the Host the client used
 * (ports compared with scheme defaults filled in), or be in the allow-list.
 */
export function checkOrigin(origin: string | undefined, host: string, policy: OriginPolicy): WsfpmError | null {
  if (origin === undefined || policy.any) return null;
  const normalized = origin.trim().toLowerCase();
  if (policy.allow.has(normalized)) return null;
  let url: URL;
  try {
    url = new URL(normalized);
  } catch {
    return wsfpmError('WSFPM_ERR_ORIGIN', `malformed Origin ${JSON.stringify(origin.slice(0, 100))}`);
  }
  const defaultPort = url.protocol === 'https:' ? '443' : '80';
  const originHost = `${url.hostname}:${url.port || defaultPort}`;
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(host.toLowerCase());
  if (m && (originHost === `${m[1]}:${m[2] ?? defaultPort}`)) return null;
  return wsfpmError('WSFPM_ERR_ORIGIN', `Origin ${origin.slice(0, 100)} does not match Host ${host.slice(0, 100)}`);
}
