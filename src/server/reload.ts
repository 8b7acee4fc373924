/** What a SIGHUP may change in a running daemon, and how settings compare. */
import { type Config } from '../config.ts';

/**
 * Settings a SIGHUP applies to a running daemon (for new connections). The
 * others are bound at start-up (listeners, php-fpm, ws's frame limit, the
 * hub, TLS files: those reload through reloadTls).
 */
export const RELOADABLE: ReadonlySet<keyof Config> = new Set<keyof Config>([
  'logLevel', 'origins', 'trustProxy', 'maxConnections', 'maxEventConnections', 'maxPerIp', 'eventTimeout', 'eventQueue', 'messageRate', 'handshakeTimeout',
  'pingInterval', 'closeGrace', 'highWater', 'stallTimeout', 'maxRejectBody', 'maxHeaderBlock', 'drainTimeout', 'doctorToken',
]);

/** Settings compare by value: origin and trust policies by what was configured. */
export function sameSetting(a: unknown, b: unknown): boolean {
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    if ('text' in a && 'text' in b) return a.text === b.text;
    return JSON.stringify(a, (_k, v: unknown) => (v instanceof Set || v instanceof Map ? [...v] : v)) === JSON.stringify(b, (_k, v: unknown) => (v instanceof Set || v instanceof Map ? [...v] : v));
  }
  return a === b;
}

