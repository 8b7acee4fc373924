/**
 * What the site behind wsfpm sees of a request (front mode, front.ts), and
 * what the client sees of the site's redirects. Pure functions over headers.
 *
 * The site trusts its peer, wsfpm on loopback, to name the client (Apache's
 * mod_remoteip, nginx's realip), so every X-Forwarded-* wsfpm passes on is
 * wsfpm's own word: what a client sent under those names is replaced, never
 * appended to (http-proxy's xfwd appends, which keeps a forged left-most
 * address that a site reading the first entry would believe). The client
 * is who clientView says: the socket's peer, or what a --trust-proxy peer
 * (a load balancer in front of wsfpm) said.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { type ClientView } from './forwarded.ts';

/** Headers that name the client or the original request, and that wsfpm does not set: a client's would be forgeries. */
const DROPPED = ['forwarded', 'x-real-ip'];

/** Sets X-Forwarded-For/-Host/-Proto/-Port from `client`, in place (http-proxy copies req.headers). Host itself is left alone. */
export function overwriteForwarded(headers: IncomingHttpHeaders, client: ClientView): void {
  const proto = client.https ? 'https' : 'http';
  headers['x-forwarded-for'] = client.remoteAddress;
  headers['x-forwarded-host'] = client.host;
  headers['x-forwarded-proto'] = proto;
  headers['x-forwarded-port'] = /:(\d{1,5})$/.exec(client.host)?.[1] ?? (client.https ? '443' : '80');
  for (const name of DROPPED) delete headers[name];
}

/**
 * The site behind speaks plain HTTP and believes it is reached that way: a
 * redirect it makes absolute from the Host header (Apache's DirectorySlash,
 * for one) says `http://HOST/…`, which on wsfpm's TLS port is a protocol
 * error. Such a Location, and only one naming the very Host the client used,
 * becomes https (as nginx's proxy_redirect would do). Null: leave it as is.
 */
export function secureLocation(location: string, host: string | undefined): string | null {
  if (!host) return null;
  const prefix = `http://${host}`;
  if (location.length !== prefix.length && !/^[/?#]/.test(location.slice(prefix.length))) return null;
  if (location.slice(0, prefix.length).toLowerCase() !== prefix.toLowerCase()) return null;
  return 'https://' + location.slice('http://'.length);
}
