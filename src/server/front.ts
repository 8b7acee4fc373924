/**
 * In front of a site (--upstream): wsfpm holds the public port and passes
 * every request it does not answer itself to the web server behind it,
 * through http-proxy: request and response bodies stream both ways with
 * backpressure (nothing is buffered), the Host header is kept, and upgrades
 * that are not wsfpm's (another application's websockets) are tunnelled.
 *
 * Which upgrades are wsfpm's (`owns`): a websocket GET whose path starts
 * with one of --ws-paths or, with none given, whose path names a script
 * under --root (an explicit route, a .php file, a directory's index.php; not
 * the front controller, which would claim every path and leave the site no
 * websocket of its own), and the doctor's probe. Everything else goes on.
 *
 * What the site sees of the client: upstream-headers.ts (X-Forwarded-* set
 * by wsfpm, the client's own replaced).
 *
 * Failures, each one answer and one log line:
 *   502 WSFPM_ERR_UPSTREAM_DOWN     the site could not be reached, or reset
 *                                   the connection before answering;
 *   504 WSFPM_ERR_UPSTREAM_TIMEOUT  the site had the whole request and sent
 *                                   no response head within --upstream-timeout
 *                                   (the upload itself does not count: it goes
 *                                   at the client's pace).
 * Once a response has begun, a failure can only cut it: the client's
 * connection is closed, so it cannot take a short body for a whole one.
 */
import http, { STATUS_CODES, ServerResponse, type ClientRequest, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { PassThrough, type Duplex, type Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import httpProxy from 'http-proxy';
import { type Config } from '../config.ts';
import { wsfpmError, WsfpmError } from '../errors.ts';
import { type Log } from '../log.ts';
import { DOCTOR_SUFFIX } from './diagnose.ts';
import { clientOf } from './forwarded.ts';
import { Resolver, safeDecode } from './resolve.ts';
import { overwriteForwarded, secureLocation } from './upstream-headers.ts';

/** One request on its way to the site. */
interface Pass {
  log: Log;
  facts: { method: string; path: string; ip: string };
  started: number;
  /** The client reached wsfpm over https (or a trusted proxy says it did). */
  https: boolean;
  proxyReq: ClientRequest | null;
  timer: NodeJS.Timeout | null;
  /** The site has answered (a response head, or a 101): a failure now cuts rather than answers. */
  answered: boolean;
  clientGone: boolean;
  /** Its failure has been logged: a cut response can be seen from both ends, and gets one line. */
  reported: boolean;
}

const kPass = Symbol('wsfpm.pass');
const kHead = Symbol('wsfpm.upgradeHead');
type Raw = IncomingMessage & { [kPass]?: Pass; [kHead]?: Buffer };

export interface Front {
  /** A request that is not an upgrade: app.ts's GET/HEAD handler. */
  web(request: FastifyRequest, reply: FastifyReply): void;
  /** Whether an upgrade is wsfpm's own; if not, `upgrade` passes it on. */
  owns(raw: IncomingMessage): Promise<boolean>;
  upgrade(request: FastifyRequest, reply: FastifyReply): void;
  /**
   * From now on requests go straight to the site, before fastify routes
   * them, except those whose path `keep` claims (routes of wsfpm's own).
   * Called once every route is registered.
   */
  takeRequests(keep: (path: string) => boolean): void;
}

/** Methods app.ts routes itself (GET, and HEAD with it), and CONNECT, which Node never routes. */
const NOT_ROUTED = new Set(['GET', 'HEAD', 'CONNECT']);

const isWebsocket = (raw: IncomingMessage): boolean => String(raw.headers.upgrade ?? '').toLowerCase() === 'websocket';

export async function registerFront(app: FastifyInstance, config: Config, log: Log): Promise<Front> {
  const scripts = new Resolver({ root: config.root, index: '', routes: config.routes });
  // Keep-alive to the site. An idle socket is dropped after 4 s, or 1 s before the Keep-Alive timeout the site
  // announces if that is sooner (Apache: 5 s): a request sent on a socket the site is closing would fail.
  const agent = new http.Agent({ keepAlive: true, timeout: 4000 });
  // xfwd stays off: it appends to the client's X-Forwarded-* (upstream-headers.ts replaces them).
  const proxy = httpProxy.createProxyServer({ target: config.upstream, agent, xfwd: false });
  /** Tunnelled upgrades, closed with the daemon (their sockets are no longer the HTTP server's). */
  const tunnels = new Set<Duplex>();

  // Node hands the bytes that followed an upgrade request to 'upgrade' listeners only; http-proxy must replay them.
  app.server.prependListener('upgrade', (req: Raw, _socket: Duplex, head: Buffer) => {
    req[kHead] = head;
  });

  function begin(raw: Raw): Pass {
    const socket = raw.socket;
    const client = clientOf(config.trustProxy, raw);
    overwriteForwarded(raw.headers, client);
    const pass: Pass = {
      log,
      facts: { method: raw.method ?? '', path: (raw.url ?? '').slice(0, 200), ip: client.remoteAddress },
      started: Date.now(),
      https: client.https,
      proxyReq: null,
      timer: null,
      answered: false,
      clientGone: false,
      reported: false,
    };
    raw[kPass] = pass;
    return pass;
  }

  /** The response-head timeout, from the moment the site has the whole request. */
  function arm(proxyReq: ClientRequest, pass: Pass): void {
    pass.proxyReq = proxyReq;
    if (pass.clientGone) return void proxyReq.destroy();
    const start = (): void => {
      if (pass.answered || proxyReq.destroyed) return;
      pass.timer = setTimeout(() => {
        proxyReq.destroy(wsfpmError('WSFPM_ERR_UPSTREAM_TIMEOUT', `no response head within ${config.upstreamTimeout} ms of the whole request`));
      }, config.upstreamTimeout);
    };
    const disarm = (): void => {
      pass.answered = true;
      if (pass.timer) clearTimeout(pass.timer);
      pass.timer = null;
    };
    if (proxyReq.writableFinished) start();
    else proxyReq.once('finish', start);
    proxyReq.once('response', disarm);
    proxyReq.once('upgrade', disarm);
    proxyReq.once('close', () => {
      if (pass.timer) clearTimeout(pass.timer);
      pass.timer = null;
    });
  }

  proxy.on('proxyReq', (proxyReq, req) => {
    const pass = (req as Raw)[kPass];
    if (pass) arm(proxyReq, pass);
  });
  proxy.on('proxyReqWs', (proxyReq, req) => {
    const pass = (req as Raw)[kPass];
    if (pass) arm(proxyReq, pass);
  });

  proxy.on('proxyRes', (proxyRes, req, res) => {
    const pass = (req as Raw)[kPass];
    if (!pass) return;
    const location = proxyRes.headers.location;
    if (pass.https && typeof location === 'string') {
      const secure = secureLocation(location, req.headers.host);
      if (secure) proxyRes.headers.location = secure;
    }
    proxyRes.once('close', () => {
      const facts = { ...pass.facts, status: proxyRes.statusCode, ms: Date.now() - pass.started };
      if (proxyRes.complete) return void pass.log.debug(facts, 'passed to the site behind');
      if (pass.clientGone || pass.reported) return void pass.log.debug(facts, 'response ended early');
      pass.reported = true;
      // http-proxy does not watch the site's side once the body flows: without this the client would wait forever.
      pass.log.warn({ ...facts, code: 'WSFPM_ERR_UPSTREAM_DOWN', detail: 'the site closed the connection in the middle of its response' }, 'response from the site behind cut');
      res.destroy();
    });
  });

  /** The short page of an error of ours, on a response or on an upgrade's bare socket (which http-proxy then ends). */
  function answerError(error: WsfpmError, out: ServerResponse | Socket, close = false): void {
    const body = `${error.status} ${STATUS_CODES[error.status] ?? ''}\n`;
    if (out instanceof ServerResponse) {
      out.writeHead(error.status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'x-wsfpm-error': error.code, ...(close ? { connection: 'close' } : {}) });
      out.end(body);
      return;
    }
    out.write(`HTTP/1.1 ${error.status} ${STATUS_CODES[error.status] ?? ''}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-wsfpm-error: ${error.code}\r\nconnection: close\r\n\r\n${body}`);
  }

  function failed(err: Error, req: IncomingMessage, out: ServerResponse | Socket): void {
    const pass = (req as Raw)[kPass];
    if (pass?.timer) clearTimeout(pass.timer);
    const error = err instanceof WsfpmError ? err : wsfpmError('WSFPM_ERR_UPSTREAM_DOWN', `${(err as NodeJS.ErrnoException).code ?? 'error'}: ${err.message}`);
    const facts = { ...pass?.facts, status: error.status, code: error.code, detail: error.detail };
    const l = pass?.log ?? log;
    if (pass?.clientGone || pass?.reported) return void l.debug(facts, 'the site failed after the client left, or again');
    if (pass) pass.reported = true;
    if (out instanceof ServerResponse) {
      if (out.headersSent || out.destroyed) {
        l.warn(facts, 'response from the site behind cut');
        out.destroy();
        return;
      }
      l.warn(facts, 'the site behind failed; answered with an error page');
      answerError(error, out);
      return;
    }
    // A tunnelled upgrade: http-proxy ends the socket after this.
    if (pass?.answered) return void l.info(facts, 'websocket tunnel to the site behind failed');
    l.warn(facts, 'the site behind failed; upgrade answered with an error');
    answerError(error, out);
  }
  proxy.on('error', failed);

  /**
   * http-proxy parses the request target with url.parse, which throws on some that Node's parser lets
   * through (an absolute form such as `http://[::1/`); thrown from the server's 'request' listener, that
   * would end the daemon. Such a request gets a 400 and one log line instead. (Upgrades in absolute form
   * never get here: upgrade.ts refuses them first.)
   */
  function guarded(raw: Raw, res: ServerResponse, go: () => void): void {
    try {
      go();
    } catch (err) {
      const error = wsfpmError('WSFPM_ERR_BAD_TARGET', `${(err as NodeJS.ErrnoException).code ?? 'error'}: ${String(raw.url).slice(0, 200)}`);
      const pass = raw[kPass];
      if (pass) pass.reported = true;
      (pass?.log ?? log).info({ ...pass?.facts, status: error.status, code: error.code, detail: error.detail }, 'request target refused');
      answerError(error, res, true);
    }
  }

  /** A request (not an upgrade) on its way to the site. */
  function passOn(raw: Raw, res: ServerResponse): void {
    const pass = begin(raw);
    // Node has already answered a client's Expect: 100-continue (no checkContinue listener is set), and
    // http-proxy emits no proxyReq event for a request that still carries it, which would leave it without a timeout.
    delete raw.headers.expect;
    res.once('close', () => {
      if (res.writableFinished) return;
      pass.clientGone = true;
      pass.proxyReq?.destroy();
    });
    guarded(raw, res, () => proxy.web(raw, res, {}, failed));
  }

  function web(request: FastifyRequest, reply: FastifyReply): void {
    reply.hijack();
    passOn(request.raw as Raw, reply.raw);
  }

  function upgrade(request: FastifyRequest, reply: FastifyReply): void {
    const raw = request.raw as Raw;
    reply.hijack();
    const pass = begin(raw);
    const socket = raw.socket;
    if (raw.method === 'GET' && isWebsocket(raw)) {
      tunnels.add(socket);
      socket.once('close', () => {
        tunnels.delete(socket);
        if (!pass.answered) {
          pass.clientGone = true;
          pass.proxyReq?.destroy();
        }
        pass.log.debug({ ...pass.facts, ms: Date.now() - pass.started }, 'websocket tunnel to the site behind closed');
      });
      proxy.ws(raw, socket, raw[kHead] ?? Buffer.alloc(0), {}, failed);
      return;
    }
    ignoreUpgrade(raw, reply.raw, pass);
  }

  /**
   * Any other upgrade (h2c, or a websocket that is not a GET) is served as a
   * plain request with its Upgrade ignored, as RFC 9110 §7.8 lets a server
   * do. Node's parser has let go of the connection, so this is its last
   * request, and a body is read off the socket here (Content-Length only).
   */
  function ignoreUpgrade(raw: Raw, res: ServerResponse, pass: Pass): void {
    const socket = raw.socket;
    delete raw.headers.upgrade;
    raw.headers.connection = 'close';
    res.shouldKeepAlive = false;
    res.once('finish', () => socket.end());
    const length = Number(raw.headers['content-length'] ?? 0);
    if (raw.headers['transfer-encoding'] !== undefined || !Number.isSafeInteger(length) || length < 0) {
      pass.log.info({ ...pass.facts, status: 501, code: 'WSFPM_ERR_UPGRADE_BODY' }, 'chunked body on an upgrade request refused');
      res.writeHead(501, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' }).end('501 Not Implemented\n');
      return;
    }
    delete raw.headers.expect;
    const options = length > 0 ? { buffer: bodyAfterHead(raw[kHead] ?? Buffer.alloc(0), socket, length) } : {};
    proxy.web(raw, res, options, failed);
  }

  // Every method but GET/HEAD, in a context of its own, passed on from onRequest: before fastify looks at the
  // body, which must reach the site untouched, whatever its Content-Type (the handler is never reached).
  await app.register(async (child) => {
    child.addHook('onRequest', async (request, reply) => (request.ws ? upgrade(request, reply) : web(request, reply)));
    child.route({ method: app.supportedMethods.filter((m) => !NOT_ROUTED.has(m)), url: '/*', handler: async () => undefined });
  });

  app.addHook('preClose', async () => {
    for (const socket of tunnels) socket.destroy();
  });
  app.addHook('onClose', async () => agent.destroy());

  return {
    web,
    upgrade,
    takeRequests(keep) {
      // fastify's own listener: routing, a request and a reply object, hooks. A request for the site needs none of it.
      const server = app.server;
      const viaFastify = server.listeners('request') as Array<(req: IncomingMessage, res: ServerResponse) => void>;
      server.removeAllListeners('request');
      server.on('request', (req: IncomingMessage, res: ServerResponse) => {
        const url = req.url ?? '/';
        const q = url.indexOf('?');
        // Once closing, fastify answers (503, connection closed), so keep-alive clients let go.
        if (!server.listening || keep(q === -1 ? url : url.slice(0, q))) {
          for (const listener of viaFastify) listener.call(server, req, res);
          return;
        }
        passOn(req as Raw, res);
      });
    },
    async owns(raw) {
      if (raw.method !== 'GET' || !isWebsocket(raw)) return false;
      const pathname = (raw.url ?? '/').split('?')[0]!;
      if (pathname.endsWith(DOCTOR_SUFFIX)) return true;
      const decoded = safeDecode(pathname);
      if (config.wsPaths.length > 0) return decoded !== null && config.wsPaths.some((prefix) => decoded.startsWith(prefix));
      return (await scripts.resolve(pathname)) !== null;
    },
  };
}

/** The first `length` bytes of a body that Node's parser left behind: `head`, then the socket, with backpressure. */
function bodyAfterHead(head: Buffer, socket: Duplex, length: number): Readable {
  const body = new PassThrough();
  let left = length;
  const take = (chunk: Buffer): void => {
    const part = chunk.subarray(0, left);
    left -= part.length;
    const more = body.write(part);
    if (left === 0) {
      socket.off('data', take);
      body.end();
    } else if (!more) {
      socket.pause();
      body.once('drain', () => socket.resume());
    }
  };
  if (head.length > 0) take(head);
  if (left > 0) socket.on('data', take);
  return body;
}
