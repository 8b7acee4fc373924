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
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { IncomingMessage, STATUS_CODES } from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import fastifyStatic from '@fastify/static';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type FpmAddress } from '../fastcgi/address.ts';
import { groupHeaders, type CgiHead } from '../fastcgi/cgi-headers.ts';
import { FcgiRequest } from '../fastcgi/request.ts';
import { type Config } from '../config.ts';
import { wsfpmError, type WsfpmError } from '../errors.ts';
import { type Log } from '../log.ts';
import { clientView, type ClientView } from './forwarded.ts';
import { buildPageParams } from './params.ts';
import { safeDecode, type ResolvedScript, type Resolver } from './resolve.ts';
import { StaticFiles } from './static.ts';

const MiB = 1024 * 1024;

/**
 * Limits of the page responder. Not configuration (yet): tests lower them,
 * nothing else should need to.
 */
export const pageLimits = {
  /** ms PHP has to send its header block once its input has ended; then 504. */
  headTimeout: 60_000,
  /** Largest chunked request body (no Content-Length), bytes; PHP needs the length up front, so it is spooled first. Then 413. */
  chunkedBodyLimit: 64 * MiB,
  /** A chunked body up to this size is held in memory, a larger one in a temp file (mode 0600). */
  chunkedInMemory: 1 * MiB,
};

export type PageHandler = (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

/** Methods other than GET and HEAD (app.ts's route) that reach PHP. TRACE never does. */
const NOT_ROUTED = new Set(['GET', 'HEAD', 'TRACE', 'CONNECT']);

/** Never copied from PHP onto a response: hop-by-hop and framing headers. Content-Length is handled apart. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'proxy-connection']);

/** What Node accepts in a header value. */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** reg-name or IP literal, optional port (RFC 9110 §7.2, RFC 3986 §3.2.2), as browsers send it. */
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::\d{1,5})?$/;

/**
 * Registers what standalone mode needs on `app` and returns the handler for
 * GET and HEAD requests that are not websocket upgrades (app.ts's route).
 * `fpm` is the php-fpm address to use (config.fpm may say `managed`).
 */
/** `extra`: parameters every page gets (the control API's address and token, so Wsfpm\Client works on any pool). */
export async function registerPages(app: FastifyInstance, config: Config, resolver: Resolver, log: Log, fpm: FpmAddress, extra: Record<string, string> = {}): Promise<PageHandler> {
  const statics = new StaticFiles(config.root);

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
    const local = socket.localAddress ?? '';
    const client = clientView(config.trustProxy, {
      address: socket.remoteAddress ?? '',
      port: socket.remotePort ?? 0,
      localHost: `${net.isIPv6(local) ? `[${local}]` : local}:${socket.localPort}`,
      tls: 'encrypted' in socket,
    }, raw.headers);
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

/** Why a page got no header block from PHP: the status the client gets, and the log code. */
interface Failure {
  status: number;
  code: string;
  detail: string;
}

function failure(error: WsfpmError): Failure {
  // Before the header block: 502 (unreachable, protocol, died, bad headers) or 503 (php-fpm overloaded).
  return { status: error.status, code: error.code, detail: error.detail ?? error.message };
}

/** One status, one short body, one log line (info for 4xx, warn for 5xx). */
function refuse(reply: FastifyReply, log: Log, status: number, code: string, detail: string, facts: Facts): FastifyReply {
  const level = status >= 500 ? 'warn' : 'info';
  log[level]({ ...facts, status, code, detail }, 'page request refused');
  return reply.code(status).type('text/plain; charset=utf-8').send(`${status} ${STATUS_CODES[status] ?? ''}\n`);
}

/** Null when the Host header is absent (HTTP/1.0; Node refuses an HTTP/1.1 request without one) or valid. */
export function checkHost(rawHeaders: readonly string[]): string | null {
  let seen: string | undefined;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() !== 'host') continue;
    if (seen !== undefined) return 'more than one Host header';
    seen = rawHeaders[i + 1]!;
  }
  if (seen === undefined) return null;
  if (seen.length > 255 || !HOST.test(seen)) return `invalid Host ${JSON.stringify(seen.slice(0, 100))}`;
  return null;
}

// ---------------------------------------------------------------------------
// The request body.

type BodyPlan =
  | { kind: 'ready'; length: number; source(): Readable | null; cleanup(): void }
  | { kind: 'too-large' }
  | { kind: 'aborted' }
  | { kind: 'failed'; detail: string };

/**
 * With a Content-Length, the body streams straight from the client into
 * STDIN. A chunked body has no length up front, and PHP needs CONTENT_LENGTH
 * before it reads anything (nginx buffers such bodies too): it is collected
 * first, in memory up to pageLimits.chunkedInMemory, then in a temp file, up
 * to pageLimits.chunkedBodyLimit (413 beyond).
 */
function planBody(raw: IncomingMessage): Promise<BodyPlan> {
  const cl = raw.headers['content-length'];
  if (cl !== undefined) {
    const length = Number(cl);
    return Promise.resolve({ kind: 'ready', length, source: () => (length > 0 ? raw : null), cleanup: () => {} });
  }
  if (raw.headers['transfer-encoding'] === undefined) return Promise.resolve({ kind: 'ready', length: 0, source: () => null, cleanup: () => {} });
  return spool(raw);
}

function spool(raw: IncomingMessage): Promise<BodyPlan> {
  return new Promise((resolve) => {
    const held: Buffer[] = [];
    let length = 0;
    let file: WriteStream | null = null;
    let filePath = '';
    let done = false;
    const removeFile = (): void => {
      if (filePath) unlink(filePath).catch(() => {});
    };
    const finish = (plan: BodyPlan): void => {
      if (done) return;
      done = true;
      raw.off('data', onData);
      raw.off('end', onEnd);
      raw.off('close', onClose);
      if (plan.kind !== 'ready') {
        file?.destroy();
        removeFile();
      }
      resolve(plan);
    };
    const onData = (chunk: Buffer): void => {
      length += chunk.length;
      if (length > pageLimits.chunkedBodyLimit) {
        raw.pause();
        finish({ kind: 'too-large' });
        return;
      }
      if (!file && length > pageLimits.chunkedInMemory) {
        filePath = path.join(os.tmpdir(), `wsfpm-body-${randomBytes(8).toString('hex')}`);
        file = createWriteStream(filePath, { flags: 'wx', mode: 0o600 });
        file.on('error', (err) => finish({ kind: 'failed', detail: `cannot spool the request body: ${err.message}` }));
        for (const b of held.splice(0)) file.write(b);
      }
      if (!file) {
        held.push(chunk);
      } else if (!file.write(chunk)) {
        raw.pause();
        file.once('drain', () => raw.resume());
      }
    };
    const onEnd = (): void => {
      if (!file) {
        finish({ kind: 'ready', length, source: () => (length > 0 ? Readable.from(held) : null), cleanup: () => {} });
        return;
      }
      file.end(() => finish({ kind: 'ready', length, source: () => createReadStream(filePath), cleanup: removeFile }));
    };
    const onClose = (): void => {
      if (!raw.complete) finish({ kind: 'aborted' });
    };
    raw.on('data', onData);
    raw.once('end', onEnd);
    raw.once('close', onClose);
  });
}

// ---------------------------------------------------------------------------
// One PHP page: a FastCGI request, its input pumped in, its output as a stream.

class PhpPage {
  /** PHP's header block; rejects with a Failure. */
  readonly head: Promise<CgiHead>;
  /** PHP's body after the header block: when the client reads slowly, pushes fill it and PHP is paused. */
  readonly output: Readable;
  /** A Content-Length PHP declared and that the response will carry; the body is held to it exactly. */
  declaredLength: number | null = null;
  /** The body was cut (PHP died mid-body, or sent less than its Content-Length). */
  broken = false;
  readonly #fcgi: FcgiRequest;
  readonly #log: Log;
  readonly #isHead: boolean;
  readonly #rejectHead: (failure: Failure) => void;
  #source: Readable | null = null;
  #cleanup: () => void = () => {};
  #timer: NodeJS.Timeout | null = null;
  #sent = 0;
  #ended = false;

  constructor(fpm: FpmAddress, params: Array<[string, string]>, isHead: boolean, config: Config, log: Log) {
    this.#log = log;
    this.#isHead = isHead;
    let resolveHead!: (head: CgiHead) => void;
    let rejectHead!: (failure: Failure) => void;
    this.head = new Promise((resolve, reject) => {
      resolveHead = resolve;
      rejectHead = reject;
    });
    this.head.catch(() => {});
    this.#rejectHead = rejectHead;
    this.output = new Readable({
      highWaterMark: config.highWater,
      read: () => this.#fcgi.resumeStdout(),
      destroy: (err, callback) => {
        this.#fcgi.destroy();
        callback(err);
      },
    });
    // Failures are logged where they happen; the response side learns of them through the stream's state.
    this.output.on('error', () => {});
    this.#fcgi = new FcgiRequest(fpm, params, {
      onHead: (head) => {
        this.#clearTimer();
        this.declaredLength = this.#declared(head);
        resolveHead(head);
      },
      onStdout: (chunk) => this.#onStdout(chunk),
      onStderr: (line) => this.#log.warn({ stderr: line }, 'PHP wrote to stderr'),
      onEnd: (error) => this.#onEnd(error),
      onDrain: () => this.#source?.resume(),
    }, { maxHeaderBlock: config.maxHeaderBlock });
  }

  /** Streams `source` (null: no body) into STDIN with backpressure, then ends STDIN and arms the header timeout. */
  feed(source: Readable | null, cleanup: () => void): void {
    this.#cleanup = cleanup;
    const end = (): void => {
      this.#cleanup();
      this.#fcgi.endStdin();
      if (!this.#fcgi.done && !this.#fcgi.head) this.#timer = setTimeout(() => this.#timeout(), pageLimits.headTimeout);
    };
    if (!source) return end();
    this.#source = source;
    source.on('data', (chunk: Buffer) => {
      if (!this.#fcgi.writeStdin(chunk)) source.pause();
    });
    source.once('end', end);
    source.once('error', (err) => {
      this.#log.warn({ detail: err.message }, 'reading the request body failed');
      this.abort();
    });
  }

  /** Ends PHP's request now (the client left). */
  abort(): void {
    this.#clearTimer();
    this.#fcgi.destroy();
    this.#releaseSource();
  }

  #timeout(): void {
    this.#timer = null;
    if (this.#fcgi.head || this.#fcgi.done) return;
    this.#rejectHead({ status: 504, code: 'WSFPM_ERR_PAGE_TIMEOUT', detail: `no header block from PHP within ${pageLimits.headTimeout} ms after its input ended` });
    this.abort();
  }

  /** PHP is done with its input: the client's body is drained into nothing (keep-alive), a spooled one dropped. */
  #releaseSource(): void {
    const source = this.#source;
    if (!source) return;
    if (source instanceof IncomingMessage) source.resume();
    else {
      source.destroy();
      this.#cleanup();
    }
  }

  #onEnd(error: WsfpmError | null): void {
    this.#clearTimer();
    this.#releaseSource();
    if (!this.#fcgi.head) {
      this.#rejectHead(failure(error ?? wsfpmError('WSFPM_ERR_PHP_ENDED')));
      return;
    }
    if (this.output.destroyed || this.#ended) return;
    if (error) {
      this.#log.warn({ code: error.code, detail: error.detail }, 'PHP page ended abnormally; response cut');
      this.#cut();
    } else if (this.declaredLength !== null && this.#sent < this.declaredLength) {
      this.#log.warn({ code: 'WSFPM_ERR_PHP_LENGTH', declared: this.declaredLength, sent: this.#sent }, 'PHP sent less than its Content-Length; response cut');
      this.#cut();
    } else {
      this.#end();
    }
  }

  #declared(head: CgiHead): number | null {
    if (this.#isHead || head.status === 204 || head.status === 304) return null;
    const values = head.headers.filter(([n]) => n.toLowerCase() === 'content-length').map(([, v]) => v);
    if (values.length !== 1 || !/^\d{1,15}$/.test(values[0]!)) return null;
    return Number(values[0]);
  }

  #onStdout(chunk: Buffer): void {
    if (this.#ended || this.output.destroyed) return;
    let part = chunk;
    if (this.declaredLength !== null && part.length > this.declaredLength - this.#sent) {
      this.#log.warn({ code: 'WSFPM_ERR_PHP_LENGTH', declared: this.declaredLength }, 'PHP sent more than its Content-Length; the rest dropped');
      part = part.subarray(0, this.declaredLength - this.#sent);
    }
    this.#sent += part.length;
    if (part.length > 0 && !this.output.push(part)) this.#fcgi.pauseStdout();
    if (this.declaredLength !== null && this.#sent >= this.declaredLength) {
      this.#end();
      this.#fcgi.destroy();
    }
  }

  /** The response cannot be completed. Once headers are out the connection is closed; before, fastify answers 502 (a generic message, nothing of PHP's). */
  #cut(): void {
    this.broken = true;
    this.output.destroy(Object.assign(new Error('PHP ended its response abnormally'), { statusCode: 502 }));
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.output.push(null);
  }

  #clearTimer(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
