/**
 * What the daemon saw of a request, for `wsfpm doctor`. An upgrade request
 * to any path ending in `/.wsfpm-doctor` is answered by the daemon itself
 * (PHP is not involved), so it can be reached through every proxy layout
 * (a `/ws/` prefix, or the same URL as the page): a 200 with this report,
 * or with `?idle`, a websocket that never pings, to measure the proxy's
 * idle timeout. It shows no paths, files or secrets.
 */
import type { IncomingMessage } from 'node:http';
import { type Config } from '../config.ts';
import { type ClientView } from './forwarded.ts';
import { checkOrigin } from './handshake.ts';

export const DOCTOR_SUFFIX = '/.wsfpm-doctor';

export interface DoctorReport {
  wsfpm: string;
  /** The TCP peer: the proxy when there is one. */
  peer: string;
  /** Whether that peer is in --trust-proxy. */
  peerTrusted: boolean;
  forwarded: { for: string | null; host: string | null; proto: string | null };
  /** The client as PHP would see it. */
  client: { address: string; host: string; https: boolean };
  origin: { sent: string | null; allowed: boolean; reason: string | null };
  pingIntervalMs: number;
  trustProxy: string;
}

const header = (req: IncomingMessage, name: string): string | null => {
  const v = req.headers[name];
  return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
};

export function diagnose(config: Config, version: string, req: IncomingMessage, client: ClientView): DoctorReport {
  const origin = header(req, 'origin');
  const originError = checkOrigin(origin ?? undefined, client.host, config.origins);
  return {
    wsfpm: version,
    peer: req.socket.remoteAddress ?? '',
    peerTrusted: client.via !== undefined,
    forwarded: { for: header(req, 'x-forwarded-for'), host: header(req, 'x-forwarded-host'), proto: header(req, 'x-forwarded-proto') },
    client: { address: client.remoteAddress, host: client.host, https: client.https },
    origin: { sent: origin, allowed: originError === null, reason: originError?.detail ?? null },
    pingIntervalMs: config.pingInterval,
    trustProxy: config.trustProxy.text,
  };
}
