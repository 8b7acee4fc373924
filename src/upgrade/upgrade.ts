/**
 * Websocket upgrades. wsfpm's own are taken off the server's 'upgrade'
 * event and completed with ws's handleUpgrade (the server @fastify/websocket
 * made, in noServer mode); fastify's route still sees the rest: the Pusher
 * face, the doctor, h2c upgrades of pages, and a front's pass-through. An
 * upgrade is checked (handshake, Origin, limits, script), then PHP decides:
 * the FastCGI request is opened and the daemon waits for PHP's header block.
 * `Status: 101` lets the handshake complete; anything else becomes the HTTP
 * response. The OPEN frame after the 101 names the strategy: the bound
 * bridge (the request stays open for the connection's life) or the event
 * dispatcher (the daemon holds the websocket, the script runs per event).
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import fastifyWebsocket from '@fastify/websocket';
import type { WebSocket } from 'ws';
import { bridge, type BridgeHandle, type BridgeObserver } from '../bridge/bridge.ts';
import { PhpEndpoint } from '../bridge/php-endpoint.ts';
import { type SideChannelListener } from '../bridge/side-channel.ts';
import { formatFpmAddress, type FpmAddress } from '../fastcgi/address.ts';
import { type CgiHead } from '../fastcgi/cgi-headers.ts';
import { type FpmHold, type FpmSet, type FpmTarget } from '../fpm/fpm-set.ts';
import { type Hub } from '../hub/hub.ts';
import { type Metrics } from '../metrics.ts';
import { type Config } from '../config.ts';
import { ERRORS, wsfpmError, WsfpmError } from '../errors.ts';
import { parseResume } from '../hub/envelope.ts';
import { type Log } from '../log.ts';
import { VERSION } from '../version.ts';
import { type OpenMode } from '../protocol/event-frames.ts';
import { EventDispatcher } from '../events/dispatcher.ts';
import { checkHandshake, checkOrigin } from '../server/handshake.ts';
import { diagnose, DOCTOR_SUFFIX } from '../server/diagnose.ts';
import { clientOf } from '../server/forwarded.ts';
import { buildParams } from '../server/params.ts';
import { type Resolver } from '../server/resolve.ts';
import { type PageHandler } from '../server/pages.ts';
import { type Front } from '../server/front.ts';
import { Slots, type Slot } from './slots.ts';
import { writeRawReply } from './raw-reply.ts';

/** What the hook learned about an accepted upgrade, for the handshake and the route. */
interface Binding {
  id: string;
  ip: string;
  php: PhpEndpoint;
  params: Array<[string, string]>;
  mode: OpenMode;
  protocol: string | false;
  extraHeaders: string[];
  log: Log;
  slot: Slot;
  /** The php-fpm master PHP runs on, held while the request is open. */
  master: FpmHold;
  /** Until the route attaches, the client leaving takes the PHP request with it. */
  onGone: () => void;
}

const kBinding = Symbol('wsfpm.binding');
const kIdleProbe = Symbol('wsfpm.idleProbe');
type RawWithBinding = IncomingMessage & { [kBinding]?: Binding; [kIdleProbe]?: boolean };

/** The doctor's idle probe: a websocket that never pings, so the proxy's idle timeout shows. */
const IDLE_PROBE_LIMIT = 10 * 60_000;
function holdIdle(socket: WebSocket): void {
  const timer = setTimeout(() => socket.close(1000, 'idle probe over'), IDLE_PROBE_LIMIT);
  socket.once('close', () => clearTimeout(timer));
}

/** Hop-by-hop and framing headers: never copied from PHP onto a response. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'content-length', 'te', 'trailer', 'proxy-connection']);

export interface UpgradeParts {
  /** Read at each upgrade: SIGHUP replaces it. */
  config(): Config;
  /** The php-fpm masters upgrades are spread over. */
  fpms: FpmSet;
  resolver: Resolver;
  hub: Hub;
  metrics: Metrics;
  /** What PHP needs to reach the control API (CGI params). */
  controlEnv: Record<string, string>;
  /** The side channel's listener; null: bound scripts use STDIN/STDOUT. */
  channel: SideChannelListener | null;
  log: Log;
}

/** The roles that answer what is not a websocket of wsfpm's own. */
export interface OtherRoles {
  /** Standalone mode: requests that are not upgrades, and an Upgrade other than websocket (h2c), are pages. */
  pages: PageHandler | null;
  /** In front of a site: upgrades that are not wsfpm's, and every other request, go on to it. */
  front: Front | null;
  /** Upgrade paths another part answers through fastify (the Pusher face's /app/KEY). */
  delegate?: (path: string) => boolean;
}

export interface Upgrades {
  /** Bound and events-mode connections open, and upgrades PHP is deciding. */
  connections(): number;
  slots: Slots;
  events: EventDispatcher;
  /**
   * Graceful stop: no new upgrades (503); every bound script is told the
   * connection is closing (CLOSE 1001, then EOF) and its client gets 1001
   * once the script has sent what it had; every events-mode client is closed
   * with 1001 and gets its close event. After `graceMs` the rest are closed
   * at once. Resolves when no connection is left.
   */
  drain(graceMs: number): Promise<void>;
  /**
   * Closes the bound websockets of master `only`, or of every master, with
   * `code` (1012 when their php-fpm master died); events-mode ones hold no
   * worker and stay.
   */
  closeBound(code: number, reason: string, only?: FpmTarget): void;
  /**
   * Adds the GET route that takes upgrades and hands everything else to
   * `others`; called once those are registered, as the websocket plugin must
   * come before them.
   */
  route(others: OtherRoles): void;
}

export async function registerUpgrades(app: FastifyInstance, parts: UpgradeParts): Promise<Upgrades> {
  const { fpms, resolver, hub, metrics, controlEnv } = parts;
  let pages: PageHandler | null = null;
  let front: Front | null = null;
  const config = parts.config;
  const slots = new Slots(() => config());
  /** Open bound connections, with the master each is bound to. */
  const bridges = new Map<BridgeHandle, FpmTarget>();
  let draining = false;
  const observer: BridgeObserver = {
    messageIn(bytes) {
      metrics.hot.messagesIn.inc();
      metrics.hot.bytesIn.inc(bytes);
    },
    messageOut(bytes) {
      metrics.hot.messagesOut.inc();
      metrics.hot.bytesOut.inc(bytes);
    },
    limit(code) {
      metrics.limits.inc({ limit: code });
    },
  };
  const events = new EventDispatcher(fpms.first, hub, () => config(), parts.log, {
    message: (direction, bytes) => (direction === 'in' ? observer.messageIn(bytes) : observer.messageOut(bytes)),
    event: (type, ok, seconds) => metrics.observeEvent(type, ok, seconds),
  });
  metrics.watchFpm(() => fpms.targets.map((t) => ({ fpm: formatFpmAddress(t.address), held: t.held })));
  metrics.watchEvents(() => ({ connections: events.sessions.size, queued: events.queued, running: events.running }));
  app.addHook('onClose', async () => events.stop());

  await app.register(fastifyWebsocket, {
    options: {
      maxPayload: config().maxMessage,
      perMessageDeflate: false,
      handleProtocols: (_protocols: Set<string>, req: IncomingMessage) => (req as RawWithBinding)[kBinding]?.protocol ?? false,
    },
    errorHandler: (error: Error, socket: WebSocket, request: FastifyRequest) => {
      // ws has already sent the right close code (1002, 1007, 1009); log it once and drop the socket.
      const binding = (request.raw as RawWithBinding)[kBinding];
      const log: Log = binding?.log ?? (request.log as unknown as Log);
      log.info({ code: (error as NodeJS.ErrnoException).code, detail: error.message }, 'websocket protocol error from client');
      socket.terminate();
    },
  });

  const wss = app.websocketServer;
  /** Connection ids: 128 random bits each, drawn from one buffer refilled every 256 upgrades rather than one call per upgrade. */
  let ids = Buffer.alloc(0);
  let idAt = 0;
  const newId = (): string => {
    if (idAt >= ids.length) {
      ids = randomBytes(16 * 256);
      idAt = 0;
    }
    idAt += 16;
    return ids.toString('hex', idAt - 16, idAt);
  };

  wss.on('headers', (headers: string[], req: IncomingMessage) => {
    const binding = (req as RawWithBinding)[kBinding];
    if (binding) headers.push(...binding.extraHeaders);
  });

  /** One line, one metric, and the answer: the status and code of `error`, its message as the body. */
  const refuse = (socket: Duplex, error: WsfpmError, log: Log, facts: object): void => {
    const level = error.status >= 500 ? 'warn' : 'info';
    log[level]({ ...facts, status: error.status, code: error.code, detail: error.detail }, 'websocket upgrade refused');
    metrics.rejects.inc({ reason: error.code });
    // x-wsfpm-error names the cause for `wsfpm doctor` and for people reading curl output; the body says it in words.
    const headers: Array<[string, string]> = [['content-type', 'text/plain; charset=utf-8'], ['x-wsfpm-error', error.code]];
    if (error.status === 503) headers.push(['retry-after', '5']);
    if (error.status === 426) headers.push(['upgrade', 'websocket']);
    writeRawReply(socket, error.status, headers, `${error.message.split(':')[0]}\n`);
  };

  /** Until ws takes the socket over, an error on it (a reset) only destroys it; 'close' does the cleaning. */
  function guardSocket(this: Duplex): void {
    this.destroy();
  }

  /**
   * A websocket upgrade of wsfpm's own, from the server's 'upgrade' event:
   * checks, a slot, PHP's answer, then the handshake through ws. Kept off
   * fastify's request chain (routing, hooks, a ServerResponse per upgrade):
   * that chain cost more CPU per connection than everything else the
   * daemon does before PHP answers (docs/performance.md).
   */
  async function take(raw: RawWithBinding, socket: Duplex, upgradeHead: Buffer): Promise<void> {
    socket.on('error', guardSocket);
    const cfg = config();
    const id = newId();
    const log = parts.log.child({ conn: id });
    const client = clientOf(cfg.trustProxy, raw);
    const facts = { path: raw.url, ip: client.remoteAddress, via: client.via };

    const early = checkHandshake(raw.method ?? '', raw.headers) ?? checkOrigin(raw.headers.origin, client.host, cfg.origins);
    if (early) return refuse(socket, early, log, facts);
    const slot = slots.take(client.remoteAddress, draining);
    if (slot instanceof WsfpmError) return refuse(socket, slot, log, facts);
    let php: PhpEndpoint | null = null;
    let master: FpmHold | null = null;
    // Whatever happens from here on, a client that leaves takes its slot, master and PHP request with it (all idempotent).
    const onGone = (): void => {
      php?.destroy();
      master?.release();
      slot.release();
    };
    socket.once('close', onGone);
    const taken = await fpms.take();
    if (taken instanceof WsfpmError) {
      onGone();
      return refuse(socket, taken, log, facts);
    }
    master = taken;
    // 'close' may have fired while the status was read, before there was a master to release.
    if (socket.destroyed) return onGone();
    const url = raw.url ?? '/';
    const q = url.indexOf('?');
    const script = await resolver.resolve(q === -1 ? url : url.slice(0, q));
    if (!script) {
      onGone();
      return refuse(socket, wsfpmError('WSFPM_ERR_NOT_FOUND', url.slice(0, 200)), log, facts);
    }
    // A client that left while we looked: nothing to open.
    if (socket.destroyed) return onGone();
    const tcp = raw.socket;
    const params = buildParams({
      method: 'GET',
      url,
      rawHeaders: raw.rawHeaders,
      remoteAddress: client.remoteAddress,
      remotePort: client.remotePort,
      localAddress: tcp.localAddress ?? '',
      localPort: tcp.localPort ?? 0,
      https: client.https,
      host: client.host,
      connectionId: id,
      maxMessage: cfg.maxMessage,
      extra: { ...controlEnv, WSFPM_MAX_CHANNELS: String(cfg.maxChannels), WSFPM_MAX_META: String(cfg.maxMeta), WSFPM_EVENT: 'open' },
    }, script);
    const offer = parts.channel?.offer();
    if (offer) params.push(...offer.params as Array<[string, string]>);
    php = new PhpEndpoint(master.target.address, params, { maxMessage: cfg.maxMessage, maxHeaderBlock: cfg.maxHeaderBlock, channel: offer }, log);
    const binding: Binding = { id, ip: client.remoteAddress, php, params, mode: { mode: 'bound' }, protocol: false, extraHeaders: [], log, slot, master, onGone };
    const fail = (error: WsfpmError): void => {
      onGone();
      refuse(socket, error, log, facts);
    };

    let head: CgiHead;
    try {
      const asked = process.hrtime.bigint();
      head = await php.waitHead(cfg.handshakeTimeout, Math.min(1000, cfg.handshakeTimeout));
      metrics.headerWait.observe(Number(process.hrtime.bigint() - asked) / 1e9);
    } catch (err) {
      return fail(err instanceof WsfpmError ? err : wsfpmError('WSFPM_ERR_PHP_DIED', String(err)));
    }

    // An interim status written as the final answer would leave the client waiting for the real one.
    if (head.status < 200 && head.status !== 101) return fail(wsfpmError('WSFPM_ERR_PHP_HEADERS', `PHP answered the upgrade with the interim status ${head.status}`));
    if (head.status !== 101) {
      const body = await php.body(cfg.maxRejectBody);
      onGone();
      log.info({ ...facts, status: head.status }, 'PHP refused the upgrade');
      metrics.rejects.inc({ reason: `php_${head.status}` });
      const headers = head.headers.filter(([name]) => !HOP_BY_HOP.has(name.toLowerCase()));
      // What Node's ServerResponse would have said of a body PHP gave no type for.
      if (body.length > 0 && !headers.some(([name]) => name.toLowerCase() === 'content-type')) headers.push(['content-type', 'application/octet-stream']);
      const dropped = writeRawReply(socket, head.status, headers, body);
      if (dropped.length > 0) log.warn({ code: 'WSFPM_ERR_PHP_HEADERS', dropped }, 'PHP sent headers that are not valid HTTP; left out of its refusal');
      return;
    }

    const offered = String(raw.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    for (const [name, value] of head.headers) {
      const lower = name.toLowerCase();
      if (lower === 'sec-websocket-protocol') {
        if (!offered.includes(value)) return fail(wsfpmError('WSFPM_ERR_PHP_HEADERS', `PHP chose subprotocol ${JSON.stringify(value)}, which the client did not offer`));
        binding.protocol = value;
      } else if (lower === 'set-cookie' || (lower.startsWith('x-') && lower !== 'x-powered-by')) {
        binding.extraHeaders.push(`${name}: ${value}`);
      }
    }
    try {
      binding.mode = await php.openMode(cfg.handshakeTimeout);
    } catch (err) {
      return fail(err as WsfpmError);
    }
    if (binding.mode.mode === 'events') {
      const full = slot.toEvents();
      if (full) {
        php.destroy();
        return refuse(socket, full, log, facts);
      }
    }
    if (socket.destroyed) return;
    raw[kBinding] = binding;
    // ws puts its own error listener on the socket, synchronously.
    socket.off('error', guardSocket);
    wss.handleUpgrade(raw, socket, upgradeHead, (ws) => attach(ws, raw));
  }

  /** Upgrades that reach fastify's route: h2c pages, the front's pass-through, the doctor. */
  async function decideOther(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (!request.ws) return;
    const raw = request.raw as RawWithBinding;
    if (pages && String(raw.headers.upgrade ?? '').toLowerCase() !== 'websocket') return void (await pages(request, reply));
    if (front && !(await front.owns(raw))) return front.upgrade(request, reply);
    const cfg = config();
    const pathOnly = (raw.url ?? '/').split('?')[0]!;
    if (pathOnly.endsWith(DOCTOR_SUFFIX)) {
      if ((raw.url ?? '').endsWith('?idle')) {
        raw[kIdleProbe] = true;
        return;
      }
      return void reply.code(200).header('cache-control', 'no-store').send(diagnose(cfg, VERSION, raw, clientOf(cfg.trustProxy, raw)));
    }
    // Only when the front's answer changed between the two looks (a script appeared): take it as ours now.
    reply.hijack();
    await take(raw, raw.socket, Buffer.alloc(0));
  }

  /** A closure of its own: one made in attach() would keep attach's whole scope (the binding) alive with it. */
  const releaser = (slot: Slot) => (): void => slot.release();

  /** ws has already sent the right close code (1002, 1007, 1009); one line, and the socket goes. */
  function eventsSocketError(this: WebSocket, error: Error): void {
    parts.log.info({ code: (error as NodeJS.ErrnoException).code, detail: error.message }, 'websocket protocol error from client');
    this.terminate();
  }

  function attach(socket: WebSocket, raw: RawWithBinding): void {
    if (raw[kIdleProbe]) return holdIdle(socket);
    const binding = raw[kBinding]!;
    // From here the bridge or the session owns the close; the listener would also keep the binding alive.
    raw.socket.off('close', binding.onGone);
    const path = (raw.url ?? '/').split('?')[0]!;
    // A malformed resume position costs only its channel's recovery: that channel starts afresh (one line, no close).
    const { positions: resume, rejected } = parseResume(raw.url ?? '/', config().maxChannels);
    if (rejected.length > 0) binding.log.warn({ code: 'WSFPM_ERR_BAD_RESUME', rejected }, `${ERRORS.WSFPM_ERR_BAD_RESUME.message}; ignored`);
    const who = { id: binding.id, path, ip: binding.ip, resume };
    binding.log.info({ path: raw.url, ip: binding.ip, protocol: binding.protocol || undefined, mode: binding.mode.mode }, 'websocket open');
    metrics.opened.inc();
    if (binding.mode.mode === 'events') {
      events.adopt(socket, binding.php, who, binding.params, binding.mode.batch, releaser(binding.slot));
      // The open request ends now; later events are requests of their own.
      binding.master.release();
      // An idle connection keeps only its session: the binding (with the upgrade's logger and PHP endpoint)
      // would otherwise live as long as it.
      delete raw[kBinding];
      socket.on('error', eventsSocketError);
      return;
    }
    const log = binding.log;
    socket.on('error', (error: Error) => {
      log.info({ code: (error as NodeJS.ErrnoException).code, detail: error.message }, 'websocket protocol error from client');
      socket.terminate();
    });
    metrics.open.inc();
    const opened = Date.now();
    const master = binding.master;
    const handle = bridge(socket, binding.php, who, hub, config(), binding.log, observer, (code) => {
      bridges.delete(handle);
      master.release();
      metrics.open.dec();
      metrics.closed.inc({ code: String(code) });
      metrics.duration.observe((Date.now() - opened) / 1000);
      binding.slot.release();
    });
    bridges.set(handle, master.target);
  }

  const connections = (): number => slots.bound + slots.events;
  return {
    connections,
    slots,
    events,
    async drain(graceMs) {
      draining = true;
      for (const b of bridges.keys()) b.drain();
      const eventsDone = events.drain(graceMs);
      const deadline = Date.now() + graceMs;
      while (slots.bound > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      for (const b of bridges.keys()) b.terminate(1001, 'server shutting down');
      await eventsDone;
      while (connections() > 0 && Date.now() < deadline + 2000) await new Promise((r) => setTimeout(r, 20));
    },
    closeBound(code, reason, only) {
      for (const [b, target] of bridges) if (!only || target === only) b.terminate(code, reason);
    },
    route(others) {
      pages = others.pages;
      front = others.front;
      app.route({
        method: 'GET',
        url: '/*',
        preValidation: decideOther,
        handler: pages ?? front?.web ?? ((_request, reply) => {
          const error = wsfpmError('WSFPM_ERR_NOT_UPGRADE');
          reply.code(error.status).header('upgrade', 'websocket').header('x-wsfpm-error', error.code).type('text/plain; charset=utf-8').send(`${error.message}\n`);
        }),
        // The doctor's idle probe, and an upgrade decideOther took over.
        wsHandler: (socket: WebSocket, request: FastifyRequest) => attach(socket, request.raw as RawWithBinding),
      });
      // @fastify/websocket's listener routes every upgrade through fastify; it now sees only what is not ours.
      const viaFastify = app.server.listeners('upgrade') as Array<(raw: IncomingMessage, socket: Duplex, head: Buffer) => void>;
      app.server.removeAllListeners('upgrade');
      const delegate = others.delegate ?? ((): boolean => false);
      const toFastify = (raw: IncomingMessage, socket: Duplex, head: Buffer): void => {
        for (const listener of viaFastify) listener.call(app.server, raw, socket, head);
      };
      const ours = (raw: IncomingMessage, socket: Duplex, head: Buffer): void => {
        void take(raw as RawWithBinding, socket, head).catch((err: unknown) => {
          // A bug of ours, not the client's doing: 500 if nothing was sent yet, and the stack in the log.
          const error = wsfpmError('WSFPM_ERR_INTERNAL', String((err as Error)?.message ?? err));
          parts.log.error({ code: error.code, stack: (err as Error)?.stack }, 'websocket upgrade failed');
          if (!(raw as RawWithBinding)[kBinding]) writeRawReply(socket, error.status, [['x-wsfpm-error', error.code]], 'internal error\n');
          else socket.destroy();
        });
      };
      app.server.on('upgrade', (raw: IncomingMessage, socket: Duplex, head: Buffer) => {
        const url = raw.url ?? '/';
        // Websocket clients send the origin form; an absolute form (`GET http://host/ HTTP/1.1`) is a proxy's,
        // fastify's router matches no route for it and leaves the socket hanging, and http-proxy may throw on it.
        if (!url.startsWith('/')) return refuse(socket, wsfpmError('WSFPM_ERR_BAD_TARGET', url.slice(0, 200)), parts.log, { ip: raw.socket.remoteAddress });
        const q = url.indexOf('?');
        const pathOnly = q === -1 ? url : url.slice(0, q);
        if (pathOnly.endsWith(DOCTOR_SUFFIX) || delegate(pathOnly)) return toFastify(raw, socket, head);
        const websocket = String(raw.headers.upgrade ?? '').toLowerCase() === 'websocket';
        if (pages && !websocket) return toFastify(raw, socket, head);
        if (!front) return ours(raw, socket, head);
        socket.on('error', guardSocket);
        front.owns(raw).then((own) => {
          socket.off('error', guardSocket);
          // A client that left while the front looked at its path: its 'close' has fired, nothing would release what we take.
          if (socket.destroyed) return;
          if (own) ours(raw, socket, head);
          else toFastify(raw, socket, head);
        }, () => socket.destroy());
      });
      app.addHook('preClose', async () => void app.server.removeAllListeners('upgrade'));
    },
  };
}
