/**
 * Pusher's two signatures, both HMAC-SHA256 with the app secret, hex:
 *
 * - channel auth, made by the site's auth endpoint (Laravel's
 *   /broadcasting/auth) and sent by the client in `pusher:subscribe`:
 *   `KEY:hmac(socket_id:channel[:channel_data])`; `pusher:signin` signs
 *   `socket_id::user::user_data` the same way.
 * - the HTTP API request signature: `hmac(METHOD\nPATH\nQUERY)` where QUERY
 *   is every parameter but auth_signature, keys lowercased, sorted, joined
 *   `k=v&…` unescaped; with auth_key, auth_timestamp (seconds, close to
 *   now), auth_version=1.0 and, for a body, body_md5 among them.
 *
 * Comparisons are constant-time: a timing difference must not reveal how
 * much of a forged signature was right.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { PUSHER } from '../defaults.ts';
import { type PusherApp } from './apps.ts';

export const hmacHex = (secret: string, text: string): string => createHmac('sha256', secret).update(text).digest('hex');

export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  // Unequal lengths still cost one comparison, of the given value against itself.
  return x.length === y.length ? timingSafeEqual(x, y) : timingSafeEqual(x, x) && false;
}

/** The `auth` a client must present to subscribe to a private or presence channel. */
export function channelAuth(app: PusherApp, socketId: string, channel: string, channelData?: string): string {
  const signed = channelData === undefined ? `${socketId}:${channel}` : `${socketId}:${channel}:${channelData}`;
  return `${app.key}:${hmacHex(app.secret, signed)}`;
}

export function validChannelAuth(app: PusherApp, socketId: string, channel: string, auth: unknown, channelData?: string): boolean {
  return typeof auth === 'string' && safeEqual(auth, channelAuth(app, socketId, channel, channelData));
}

export function validSigninAuth(app: PusherApp, socketId: string, userData: string, auth: unknown): boolean {
  return typeof auth === 'string' && safeEqual(auth, `${app.key}:${hmacHex(app.secret, `${socketId}::user::${userData}`)}`);
}

/** The string an HTTP API request signs. */
export function requestStringToSign(method: string, path: string, params: ReadonlyMap<string, string>): string {
  const query = [...params].filter(([k]) => k !== 'auth_signature').sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => `${k}=${v}`).join('&');
  return `${method.toUpperCase()}\n${path}\n${query}`;
}

/**
 * Checks an HTTP API request against the app; null when it is genuine, else
 * why not (for the log; the client only learns that it was refused).
 * `params` holds the decoded query with lowercased keys.
 */
export function checkRequestSignature(app: PusherApp, method: string, path: string, params: ReadonlyMap<string, string>, body: Buffer, nowMs: number): string | null {
  if (params.get('auth_key') !== app.key) return 'auth_key is not this app\'s key';
  if (params.get('auth_version') !== '1.0') return 'auth_version must be 1.0';
  const ts = Number(params.get('auth_timestamp'));
  if (!/^\d{1,12}$/.test(params.get('auth_timestamp') ?? '')) return 'auth_timestamp is missing';
  if (Math.abs(nowMs / 1000 - ts) > PUSHER.timestampWindow) return `auth_timestamp is more than ${PUSHER.timestampWindow} s from the server's clock`;
  if (body.length > 0 || params.has('body_md5')) {
    const md5 = createHash('md5').update(body).digest('hex');
    if (!safeEqual(params.get('body_md5') ?? '', md5)) return 'body_md5 does not match the body';
  }
  const expected = hmacHex(app.secret, requestStringToSign(method, path, params));
  if (!safeEqual(params.get('auth_signature') ?? '', expected)) return 'auth_signature does not match';
  return null;
}
