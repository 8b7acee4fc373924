/**
 * What the daemon saw of a request, for `wsfpm doctor`. An upgrade request
 * to any path ending in `/.wsfpm-doctor` is answered by the daemon itself
 * (PHP is not involved), so it can be reached through every proxy layout
 * (a `/ws/` prefix, or the same URL as the page): a 200 with this report,
 * or with `?idle`, a websocket that never pings, to measure the proxy's
 * idle timeout.
 *
 * Anyone may ask, so the report tells the public only what its own request
 * showed: whether the peer is trusted, the forwarded headers, the client as
 * PHP would see it, the origin verdict. The daemon's settings (version,
 * --trust-proxy, ping interval) and the peer's address, which names the
 * proxy inside the site's network, come only with the doctor token in
 * DOCTOR_TOKEN_HEADER. It shows no paths, files or secrets either way.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { type Config } from '../config.ts';
import { type ClientView } from './forwarded.ts';
import { checkOrigin } from './handshake.ts';

export const DOCTOR_SUFFIX = '/.wsfpm-doctor';
/** Not Authorization: a site behind HTTP auth needs that one for itself. */
export const DOCTOR_TOKEN_HEADER = 'x-wsfpm-doctor-token';
/** The report's format; marks an answer as wsfpm's own. */
export const DOCTOR_FORMAT = 1;

export interface DoctorReport {
  doctor: typeof DOCTOR_FORMAT;
  /** Whether the TCP peer (the proxy when there is one) is in --trust-proxy. */
  peerTrusted: boolean;
  forwarded: { for: string | null; host: string | null; proto: string | null };
  /** The client as PHP would see it. */
  client: { address: string; host: string; https: boolean };
  origin: { sent: string | null; allowed: boolean; reason: string | null };
  /** Only for a request with the doctor token; null otherwise. */
  daemon: { version: string; peer: string; pingIntervalMs: number; trustProxy: string } | null;
}

const header = (req: IncomingMessage, name: string): string | null => {
  const v = req.headers[name];
  return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
};

/** Compared as digests: constant time, and the length of the token is not told either. */
function tokenMatches(sent: string | null, token: string): boolean {
  if (!token || sent === null) return false;
  const digest = (s: string): Buffer => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(sent), digest(token));
}

export function diagnose(config: Config, version: string, req: IncomingMessage, client: ClientView): DoctorReport {
  const origin = header(req, 'origin');
  const originError = checkOrigin(origin ?? undefined, client.host, config.origins);
  const trusted = tokenMatches(header(req, DOCTOR_TOKEN_HEADER), config.doctorToken);
  return {
    doctor: DOCTOR_FORMAT,
    peerTrusted: client.via !== undefined,
    forwarded: { for: header(req, 'x-forwarded-for'), host: header(req, 'x-forwarded-host'), proto: header(req, 'x-forwarded-proto') },
    client: { address: client.remoteAddress, host: client.host, https: client.https },
    origin: { sent: origin, allowed: originError === null, reason: originError?.detail ?? null },
    daemon: trusted
      ? { version, peer: req.socket.remoteAddress ?? '', pingIntervalMs: config.pingInterval, trustProxy: config.trustProxy.text }
      : null,
  };
}
