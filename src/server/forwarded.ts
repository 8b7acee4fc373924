/**
 * Who the client really is when wsfpm sits behind Apache or Nginx. The
 * proxy connects from loopback and names the client in X-Forwarded-For/
 * -Host/-Proto; those headers are believed only from a trusted proxy
 * address, because any client can send them.
 */
import type { IncomingMessage } from 'node:http';
import net from 'node:net';

export interface TrustPolicy {
  list: net.BlockList;
  /** As configured, for logs and the doctor. */
  text: string;
}

/** `127.0.0.1,::1,10.0.0.0/8` → a policy; throws with what is wrong. */
export function parseTrustList(text: string): TrustPolicy {
  const list = new net.BlockList();
  for (const item of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [addr, bits] = item.split('/');
    const family = net.isIPv4(addr ?? '') ? 'ipv4' : net.isIPv6(addr ?? '') ? 'ipv6' : null;
    if (!family) throw new Error(`${item}: expected IP addresses or CIDR ranges such as 127.0.0.1,::1,10.0.0.0/8`);
    if (bits === undefined) list.addAddress(addr!, family);
    else {
      const prefix = Number(bits);
      if (!/^\d+$/.test(bits) || prefix > (family === 'ipv4' ? 32 : 128)) throw new Error(`${item}: bad prefix length`);
      list.addSubnet(addr!, prefix, family);
    }
  }
  return { list, text };
}

export function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
}

export function isTrusted(policy: TrustPolicy, ip: string): boolean {
  const n = normalizeIp(ip);
  if (net.isIPv4(n)) return policy.list.check(n, 'ipv4');
  if (net.isIPv6(n)) return policy.list.check(n, 'ipv6');
  return false;
}

export interface ClientView {
  remoteAddress: string;
  remotePort: number;
  host: string;
  https: boolean;
  /** The proxy's own address when forwarded headers were used. */
  via?: string;
}

type Headers = Record<string, string | string[] | undefined>;

/**
 * The right-most value: the one the trusted proxy itself added. Proxies that
 * append (Apache) keep whatever the client sent in front of it.
 */
const last = (v: string | string[] | undefined): string | undefined => {
  const s = Array.isArray(v) ? v.join(',') : v;
  const item = s?.split(',').pop()?.trim();
  return item || undefined;
};

const first = (v: string | string[] | undefined): string | undefined => {
  const s = Array.isArray(v) ? v.join(',') : v;
  const item = s?.split(',')[0]?.trim();
  return item || undefined;
};

/**
 * The client as PHP should see it. From a trusted peer: the right-most
 * X-Forwarded-For address that is not itself a trusted proxy (earlier
 * entries were written by the client and may be forged), and likewise the
 * last X-Forwarded-Host and X-Forwarded-Proto. From anyone else: the socket.
 */
export function clientView(policy: TrustPolicy, peer: { address: string; port: number; localHost: string; tls: boolean }, headers: Headers): ClientView {
  const direct: ClientView = {
    remoteAddress: normalizeIp(peer.address),
    remotePort: peer.port,
    host: first(headers.host) ?? peer.localHost,
    https: peer.tls,
  };
  if (!isTrusted(policy, peer.address)) return direct;
  const view: ClientView = { ...direct, via: direct.remoteAddress };
  const xff = headers['x-forwarded-for'];
  if (xff) {
    const hops = (Array.isArray(xff) ? xff.join(',') : xff).split(',').map((s) => normalizeIp(s.trim())).filter((s) => net.isIP(s));
    let client: string | undefined;
    for (let i = hops.length - 1; i >= 0; i--) {
      client = hops[i];
      if (!isTrusted(policy, client!)) break;
    }
    if (client) {
      view.remoteAddress = client;
      // The client's port is not forwarded; PHP gets 0 rather than the proxy's port.
      view.remotePort = 0;
    }
  }
  const host = last(headers['x-forwarded-host']);
  if (host && /^[A-Za-z0-9.\-_~[\]:]+$/.test(host)) view.host = host;
  const proto = last(headers['x-forwarded-proto'])?.toLowerCase();
  if (proto === 'https' || proto === 'wss') view.https = true;
  else if (proto === 'http' || proto === 'ws') view.https = false;
  return view;
}

/** clientView for a request, its peer taken from the request's socket. */
export function clientOf(policy: TrustPolicy, req: IncomingMessage): ClientView {
  const socket = req.socket;
  const local = socket.localAddress ?? '';
  return clientView(policy, {
    address: socket.remoteAddress ?? '',
    port: socket.remotePort ?? 0,
    // The Host a client without one would have used: IPv6 in brackets.
    localHost: `${net.isIPv6(local) ? `[${local}]` : local}:${socket.localPort}`,
    tls: 'encrypted' in socket,
  }, req.headers);
}
