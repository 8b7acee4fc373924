/**
 * Standalone mode (`--pages true`): requests that are not websocket upgrades
 * are served like a small Apache site would serve them, on the same port.
 *
 * Routing, in order (the URL path percent-decoded by safeDecode; one that
 * tries to climb, or holds NUL or a backslash, is a 404):
 *   1. an existing regular file below the root → static (never `.php`
 *      source, dotfiles, or anything whose real path leaves the root:
 *      static.ts);
 *   2. a directory named without its trailing slash that has an index →
 *      301 to add the slash (GET/HEAD), so relative links work;
 *   3. a directory with an index.html and no index.php → that file;
 *   4. the resolver (resolve.ts): an explicit route, a `.php` script with
 *      PATH_INFO, a directory's index.php, then the front controller
 *      (config.index) → PHP; else 404.
 *
 * PHP runs as a FastCGI responder: one FcgiRequest per page, the request
 * body streamed into STDIN with backpressure, PHP's output streamed back out
 * with backpressure, PHP's `Status:` and every header (repeated Set-Cookie
 * kept apart) on the response.
 *
 * Statuses the daemon itself answers, each with one log line:
 *   400 invalid or repeated Host (and, from Node's parser, malformed
 *       requests: both Content-Length and Transfer-Encoding, bad chunking);
 *   404 no file and no script, a path that tries to leave the root;
 *   405 a method other than GET/HEAD on a static file;
 *   413 a chunked body (no Content-Length) over pageLimits.chunkedBodyLimit;
 *   415 a malformed Content-Type (fastify refuses it before the handler);
 *   431 request headers over Node's maxHeaderSize (16 KiB);
 *   502 php-fpm unreachable, or PHP broke the protocol or died before its
 *       header block;
 *   503 php-fpm refused the request as overloaded (+ Retry-After);
 *   504 PHP sent no header block within pageLimits.headTimeout after its
 *       input ended. 504, not the 503 websockets get: for a page the cause
 *       may just as well be a slow script as a full pool, and 503 with
 *       Retry-After invites clients to resend a POST whose script may still
 *       be running.
 */
import { randomBytes } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type net from 'node:net';
import fastifyStatic from '@fastify/static';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type FpmAddress } from '../fastcgi/address.ts';
import { groupHeaders, type CgiHead } from '../fastcgi/cgi-headers.ts';
import { registerClientModule } from './client-module.ts';
import { type Config } from '../config.ts';
import { type Log } from '../log.ts';
import { clientOf, type ClientView } from './forwarded.ts';
import { checkHost } from './host.ts';
import { planBody } from './page-body.ts';
import { pageLimits, PhpPage, type Failure } from './page-responder.ts';
import { buildPageParams } from './params.ts';
import { safeDecode, type ResolvedScript, type Resolver } from './resolve.ts';
import { StaticFiles } from './static.ts';

// Split out of this file, still imported from it (test/pages.test.ts lowers pageLimits).
export { checkHost, pageLimits };

export type PageHandler = (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

/** Methods other than GET and HEAD (app.ts's route) that reach PHP. TRACE never does. */
const NOT_ROUTED = new Set(['GET', 'HEAD', 'TRACE', 'CONNECT']);

/** Never copied from PHP onto a response: hop-by-hop and framing headers. Content-Length is handled apart. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'proxy-connection']);

/** What Node accepts in a header value. */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * Registers what standalone mode needs on `app` and returns the handler for
 * GET and HEAD requests that are not websocket upgrades (app.ts's route).
 * `fpm` is the php-fpm address to use (config.fpm may say `managed`).
 */
/** `extra`: parameters every page gets (the control API's address and token, so Wsfpm\Client works on any pool). */
export async function registerPages(app: FastifyInstance, config: Config, resolver: Resolver, log: Log, fpm: FpmAddress, extra: Record<string, string> = {}): Promise<PageHandler> {
  const statics = new StaticFiles(config.root);
  registerClientModule(app);

  // reply.sendFile only: routing is ours (no route of the plugin's own), and so is the choice of what may be served.
  await app.register(fastifyStatic, { serve: false, dotfiles: 'deny', index: false, acceptRanges: true, etag: true, lastModified: true });

  // Every other method, in a context of its own whose only body parser leaves the body in request.raw.
  await app.register(async (child) => {
    child.removeAllContentTypeParsers();
    child.addContentTypeParser('*', (_request, _payload, done) => done(null));
    child.route({ method: app.supportedMethods.filter((m) => !NOT_ROUTED.has(m)), url: '/*', handler: page });
    // What fastify itself refuses before the handler (a malformed Content-Type: 415) gets a log line and a plain answer too.
    child.setErrorHandler((error: FastifyError, request, reply) => {
      const status = error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode <= 599 ? error.statusCode : 500;
      const facts = { method: request.raw.method ?? '', path: (request.raw.url ?? '').slice(0, 200), ip: request.raw.socket.remoteAddress };
      return refuse(reply, log, status, error.code ?? 'WSFPM_ERR_PAGE', error.message, facts);
    });
  });

  // Requests Node's parser refuses (431, 400) never reach a route; fastify answers them, this logs them.
  app.server.prependListener('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    log.info({ code: 'WSFPM_ERR_BAD_REQUEST', status, detail: err.code ?? err.message, ip: socket.remoteAddress }, 'malformed HTTP request refused');
  });

  async function page(request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    try {
      return await route(request, reply);
    } catch (err) {
      // A bug here must cost one request a 500, never the daemon, and never show the client its text.
      log.error({ method: request.raw.method, path: request.raw.url?.slice(0, 200), err }, 'page handler failed');
      if (!reply.sent && !reply.raw.headersSent) return reply.code(500).type('text/plain; charset=utf-8').send('500 Internal Server Error\n');
      reply.raw.destroy();
      return reply;
    }
  }

  async function route(request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    const raw = request.raw;
    const socket = raw.socket;
    const method = raw.method ?? 'GET';
    const url = raw.url ?? '/';
    const rlog = log.child({ page: randomBytes(6).toString('hex') });
    const facts = { method, path: url.slice(0, 200), ip: socket.remoteAddress };

    const badHost = checkHost(raw.rawHeaders);
    if (badHost) return refuse(reply, rlog, 400, 'WSFPM_ERR_BAD_HOST', badHost, facts);
    const client = clientOf(config.trustProxy, raw);
    facts.ip = client.remoteAddress;

    const q = url.indexOf('?');
    const pathname = q === -1 ? url : url.slice(0, q);
    const decoded = safeDecode(pathname);
    if (decoded === null) return refuse(reply, rlog, 404, 'WSFPM_ERR_NOT_FOUND', 'path refused (malformed, or tries to leave the root)', facts);

    const reads = method === 'GET' || method === 'HEAD';
    const match = await statics.match(decoded);
    if (match.kind === 'file') return serveStatic(reply, match.file, reads, rlog, facts);
    if (match.kind === 'slash' && reads) {
      const location = pathname.replace(/\/{2,}/g, '/') + '/' + (q === -1 ? '' : url.slice(q));
      rlog.debug({ ...facts, status: 301, location }, 'directory: redirect to its trailing slash');
      return reply.code(301).header('location', location).type('text/plain; charset=utf-8').send(`${location}\n`);
    }
    // A directory without index.php: its index.html comes before the front controller.
    if (match.kind === 'index') return serveStatic(reply, match.file, reads, rlog, facts);
    const script = await resolver.resolve(pathname);
    if (!script) return refuse(reply, rlog, 404, 'WSFPM_ERR_NOT_FOUND', 'no file and no script for this path', facts);
    return runPhp(request, reply, script, client, rlog, facts);
  }

  async function serveStatic(reply: FastifyReply, file: string, reads: boolean, rlog: Log, facts: Facts): Promise<unknown> {
    if (!reads) {
      reply.header('allow', 'GET, HEAD');
      return refuse(reply, rlog, 405, 'WSFPM_ERR_METHOD', 'only GET and HEAD on a static file', facts);
    }
    const root = await statics.realRoot();
    rlog.debug({ ...facts, file }, 'static file');
    reply.header('x-content-type-options', 'nosniff');
    // Every name on the path was vetted by static.ts: @fastify/send's own dotfile refusal only has to let `.well-known` through.
    return reply.sendFile(file, root!, file.startsWith('/.well-known/') ? { dotfiles: 'allow' } : {});
  }

  async function runPhp(request: FastifyRequest, reply: FastifyReply, script: ResolvedScript, client: ClientView, rlog: Log, facts: Facts): Promise<unknown> {
    const raw = request.raw;
    const res = reply.raw;
    const started = Date.now();
    const body = await planBody(raw);
    if (body.kind === 'aborted') return reply;
    if (body.kind === 'too-large') {
      reply.header('connection', 'close');
      return refuse(reply, rlog, 413, 'WSFPM_ERR_BODY_TOO_LARGE', `chunked body over ${pageLimits.chunkedBodyLimit} bytes`, facts);
    }
    if (body.kind === 'failed') {
      reply.header('connection', 'close');
      return refuse(reply, rlog, 500, 'WSFPM_ERR_SPOOL', body.detail, facts);
    }

    const contentType = raw.headers['content-type'];
    const params = buildPageParams({
      method: raw.method ?? 'GET',
      url: raw.url ?? '/',
      rawHeaders: raw.rawHeaders,
      remoteAddress: client.remoteAddress,
      remotePort: client.remotePort,
      localAddress: raw.socket.localAddress ?? '',
      localPort: raw.socket.localPort ?? 0,
      https: client.https,
      host: client.host,
      contentLength: body.length,
      ...(contentType !== undefined ? { contentType } : {}),
      extra,
    }, script);

    const php = new PhpPage(fpm, params, raw.method === 'HEAD', config, rlog);
    const clientGone = (): void => {
      if (!res.writableFinished) php.abort();
    };
    res.once('close', clientGone);
    php.feed(body.source(), body.cleanup);

    let head: CgiHead;
    try {
      head = await php.head;
    } catch (err) {
      if (res.destroyed || raw.socket.destroyed) return reply;
      const failure = err as Failure;
      if (failure.status === 503) reply.header('retry-after', '5');
      return refuse(reply, rlog, failure.status, failure.code, failure.detail, facts);
    }
    if (php.broken) {
      // Header block and a cut body arrived together: nothing has been sent yet, so say so properly.
      return refuse(reply, rlog, 502, 'WSFPM_ERR_PHP_DIED', 'PHP ended its response abnormally', facts);
    }
    if (head.status < 200) {
      php.abort();
      return refuse(reply, rlog, 502, 'WSFPM_ERR_PHP_HEADERS', `PHP answered a page with status ${head.status}`, facts);
    }

    reply.code(head.status);
    for (const [name, values] of groupHeaders(head.headers)) {
      if (HOP_BY_HOP.has(name)) continue;
      const ok = values.filter((v) => HEADER_VALUE.test(v));
      if (ok.length < values.length) rlog.warn({ ...facts, header: name }, 'PHP sent a header value with invalid characters; dropped');
      if (name === 'content-length') {
        if (php.declaredLength !== null || (raw.method === 'HEAD' && ok.length === 1 && /^\d+$/.test(ok[0]!))) reply.header('content-length', ok[0]!);
        continue;
      }
      if (ok.length > 0) reply.header(name, ok.length === 1 ? ok[0]! : ok);
    }
    res.once('finish', () => {
      const level = head.status >= 500 ? 'warn' : 'info';
      rlog[level]({ ...facts, status: head.status, script: script.scriptName, ms: Date.now() - started }, 'page');
    });
    return reply.send(php.output);
  }

  return page;
}

type Facts = { method: string; path: string; ip: string | undefined };

/** One status, one short body, one log line (info for 4xx, warn for 5xx). */
function refuse(reply: FastifyReply, log: Log, status: number, code: string, detail: string, facts: Facts): FastifyReply {
  const level = status >= 500 ? 'warn' : 'info';
  log[level]({ ...facts, status, code, detail }, 'page request refused');
  return reply.code(status).type('text/plain; charset=utf-8').send(`${status} ${STATUS_CODES[status] ?? ''}\n`);
}
