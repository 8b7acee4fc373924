/**
 * The Pusher side of the tests: real pusher-js clients as a Laravel page
 * configures them, and HTTP API requests signed the way Pusher's HTTP API
 * reference specifies (HMAC-SHA256 over METHOD\nPATH\nsorted query), written
 * from that text rather than taken from a library.
 */
import { createHash, createHmac } from 'node:crypto';
import PusherModule from 'pusher-js';
import { withTimeout } from './harness.ts';

// pusher-js is CommonJS whose types declare `export default`: at run time the default import is already the class.
export const Pusher = PusherModule as unknown as typeof PusherModule.default;
export type Pusher = InstanceType<typeof Pusher>;
export type Channel = ReturnType<Pusher['subscribe']>;

export const APP_ID = 'test-app';
export const KEY = 'test-key';
export const SECRET = 'test-secret-0123456789';

/** A pusher-js client on 127.0.0.1:port (ws only), authorised (channels, signin) by the fixture's PHP pages as `user`; resolves once connected. */
export async function connectPusher(port: number, user = 'alice', key = KEY, into: Pusher[] = []): Promise<Pusher> {
  const p = new Pusher(key, {
    cluster: 'mt1',
    wsHost: '127.0.0.1',
    wsPort: port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: { endpoint: `http://127.0.0.1:${port}/pusher/auth.php`, transport: 'ajax', params: { user } },
    userAuthentication: { endpoint: `http://127.0.0.1:${port}/pusher/user-auth.php`, transport: 'ajax', params: { user } },
  } as ConstructorParameters<typeof Pusher>[1]);
  into.push(p);
  await withTimeout(new Promise<void>((resolve) => p.connection.bind('connected', () => resolve())), 10_000, 'pusher-js connected');
  return p;
}

/** The next `event` on `channel`, with its data. */
export function next<T = unknown>(channel: Channel, event: string, what = event): Promise<T> {
  return withTimeout(new Promise<T>((resolve) => {
    const f = (data: T): void => {
      channel.unbind(event, f);
      resolve(data);
    };
    channel.bind(event, f);
  }), 10_000, what);
}

/** Subscribes and waits for success; a subscription error fails. */
export async function subscribed(p: Pusher, name: string): Promise<Channel> {
  const channel = p.subscribe(name);
  const failed = next<unknown>(channel, 'pusher:subscription_error').then((e) => {
    throw new Error(`subscription to ${name} failed: ${JSON.stringify(e)}`);
  });
  failed.catch(() => {});
  await Promise.race([next(channel, 'pusher:subscription_succeeded'), failed]);
  return channel;
}

export interface SignOptions {
  secret?: string;
  key?: string;
  timestamp?: number;
  query?: Record<string, string>;
}

/** The URL of a signed HTTP API request. */
export function signedUrl(port: number, method: string, path: string, body: string, options: SignOptions = {}): string {
  const params: Record<string, string> = {
    ...options.query,
    auth_key: options.key ?? KEY,
    auth_timestamp: String(options.timestamp ?? Math.floor(Date.now() / 1000)),
    auth_version: '1.0',
    ...(body ? { body_md5: createHash('md5').update(body).digest('hex') } : {}),
  };
  const query = Object.keys(params).sort().map((k) => `${k}=${params[k]}`).join('&');
  const signature = createHmac('sha256', options.secret ?? SECRET).update(`${method}\n${path}\n${query}`).digest('hex');
  return `http://127.0.0.1:${port}${path}?${new URLSearchParams({ ...params, auth_signature: signature })}`;
}

export async function pusherApi(port: number, method: 'GET' | 'POST', path: string, body?: unknown, options?: SignOptions): Promise<{ status: number; json: Record<string, unknown> }> {
  const text = body === undefined ? '' : JSON.stringify(body);
  const res = await fetch(signedUrl(port, method, path, text, options), { method, headers: text ? { 'content-type': 'application/json' } : {}, body: text || undefined });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** POST /apps/ID/events: `data` JSON-encoded as Laravel's broadcaster does. */
export const triggerEvent = (port: number, channels: string[], name: string, data: unknown, extra: Record<string, unknown> = {}) =>
  pusherApi(port, 'POST', `/apps/${APP_ID}/events`, { name, data: JSON.stringify(data), channels, ...extra });
