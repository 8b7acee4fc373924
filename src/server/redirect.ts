/**
 * --redirect-port: a plain-HTTP listener beside the TLS one that answers
 * every request with 301 to the same URL on https (typically port 80 next
 * to 443). It serves nothing else: an ACME http-01 check still passes,
 * because Let's Encrypt follows the redirect to https (without checking the
 * certificate there) and wsfpm passes /.well-known/ to the site behind.
 *
 * It starts with the daemon (fastify's onReady, so a port already in use
 * fails start-up) and stops with it (onClose).
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { type Config } from '../config.ts';
import { type Log } from '../log.ts';

/** A Host header as browsers send it: a name or an IP literal, an optional port. */
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::\d{1,5})?$/;

/** `https://HOST[:PORT]/path?query` for a request, or null when its Host cannot be put into a Location. */
export function httpsLocation(host: string | undefined, url: string, httpsPort: number): string | null {
  if (!host || host.length > 255 || !HOST.test(host) || !url.startsWith('/')) return null;
  const name = host.replace(/:\d+$/, '');
  return `https://${name}${httpsPort === 443 ? '' : `:${httpsPort}`}${url}`;
}

export function registerRedirect(app: FastifyInstance, config: Config, log: Log): void {
  const server = http.createServer({ headersTimeout: config.requestTimeout }, (req: IncomingMessage, res: ServerResponse) => {
    // The TLS listener's real port: config.port may be 0 (any free port).
    const port = (app.server.address() as AddressInfo | null)?.port ?? config.port;
    const location = httpsLocation(req.headers.host, req.url ?? '/', port);
    if (!location) {
      log.info({ code: 'WSFPM_ERR_BAD_REQUEST', status: 400, host: String(req.headers.host ?? '').slice(0, 100), ip: req.socket.remoteAddress }, 'plain-HTTP request without a usable Host; no redirect');
      res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' }).end('400 Bad Request\n');
      return;
    }
    res.writeHead(301, { location, 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'max-age=3600' }).end(`moved to ${location}\n`);
  });
  app.addHook('onReady', async () => {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.redirectPort, config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    log.info({ port: config.redirectPort, host: config.host }, 'plain HTTP redirects to https');
  });
  app.addHook('onClose', async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
}
