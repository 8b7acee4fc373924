/**
 * The websocket daemon: fastify with @fastify/websocket. An upgrade request
 * is checked (handshake, Origin, script, limits), then PHP decides: the
 * preValidation hook opens the FastCGI request and waits for PHP's header
 * block. `Status: 101` lets the handshake complete and the route binds the
 * websocket to that request; anything else becomes the HTTP response.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Server as TlsServer } from 'node:tls';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import fastifyWebsocket from '@fastify/websocket';
import type { WebSocket } from 'ws';
import { bridge, type BridgeHandle, type BridgeObserver } from '../bridge/bridge.ts';
import { Metrics } from '../metrics.ts';
import { PhpEndpoint } from '../bridge/php-endpoint.ts';
import { type FpmAddress } from '../fastcgi/address.ts';
import { groupHeaders, type CgiHead } from '../fastcgi/cgi-headers.ts';
import { poolIsFull, readPoolStatus } from '../fpm/status.ts';
import { RELOADABLE, sameSetting } from './reload.ts';
import { ManagedFpm } from '../fpm/supervisor.ts';
import { startControl } from '../control/server.ts';
import { Hub } from '../hub/hub.ts';
import { RedisBroker } from '../hub/redis-broker.ts';
import { type Config } from '../config.ts';
import { wsfpmError, WsfpmError } from '../errors.ts';
import { type Log } from '../log.ts';
import { checkHandshake, checkOrigin } from './handshake.ts';
import { VERSION } from '../version.ts';
import { diagnose, DOCTOR_SUFFIX } from './diagnose.ts';
import { clientOf } from './forwarded.ts';
import { buildParams } from './params.ts';
import { registerPages } from './pages.ts';
import { registerFront } from './front.ts';
import { registerRedirect } from './redirect.ts';
import { registerPusher } from '../pusher/register.ts';
import { reloadTls, serverOptions } from './tls.ts';
import { Resolver } from './resolve.ts';

/** What the hook learned about an accepted upgrade, for the handshake and the route. */
interface Binding {
  id: string;
  ip: string;
  php: PhpEndpoint;
  protocol: string | false;
  extraHeaders: string[];
  attached: boolean;
  log: Log;
  release?: () => void;
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

export interface Daemon {
  app: FastifyInstance;
  /** Open and pending bound connections. */
  connections(): number;
  metrics: Metrics;
  drain(graceMs: number): Promise<void>;
  /** Closes every open websocket with `code` (e.g. 1012 when their php-fpm master died). */
  closeAll(code: number, reason: string): void;
  /** The php-fpm master wsfpm runs itself with `--fpm managed`, else null. */
  managed: ManagedFpm | null;
  hub: Hub;
  /** Redis, when several nodes share channels (--redis). */
  broker: RedisBroker | null;
  /** The control API's address and token, when it is enabled. */
  control: { address: string; token: string } | null;
  /** Reads --tls-cert/--tls-key again for new connections (SIGHUP); false, old pair kept, when they do not load. */
  reloadTls(): Promise<boolean>;
  /**
   * SIGHUP: takes the settings that can change while running from `next`
   * (they apply to new connections); returns the changed ones that need a
   * restart, which keep their running values.
   */
  reload(next: Config): { applied: string[]; needRestart: string[] };
}

/** `logStream` receives pino's JSON lines (default: stdout). */
export async function createDaemon(config: Config, logStream?: { write(line: string): void }): Promise<Daemon> {
  const app = Fastify({
    logger: logStream ? { level: config.logLevel, stream: logStream } : { level: config.logLevel },
    // Each connection gets its own open/close lines; per-request lines would double them.
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: false,
    // Slowloris: a client gets requestTimeout to finish its request headers (checked every second), then 408.
    // With --tls-cert/--tls-key: `https` instead of `http`, with the same options (tls.ts).
    ...serverOptions(config, { headersTimeout: config.requestTimeout, connectionsCheckingInterval: 1000 }),
  });
  const hub = new Hub(config.maxChannels);
  const broker = config.redis ? await RedisBroker.start(config.redis, hub, app.log as unknown as Log) : null;
  if (broker) app.addHook('onClose', async () => broker.stop());
  const controlToken = config.controlToken || randomBytes(24).toString('hex');
  const metrics = new Metrics(
    async () => {
      if (!fpmStatus) return null;
      const st = await readPoolStatus(fpmStatus).catch(() => null);
      return st && { busy: st.active, idle: st.idle };
    },
    () => broker?.state ?? null,
  );
  const control = config.control ? await startControl({ address: config.control, token: controlToken, maxMessage: config.maxMessage }, hub, metrics, app.log as unknown as Log) : null;
  if (control) app.addHook('onClose', async () => control.close());
  /** What PHP needs to reach the control API: CGI params of bound scripts, env of a managed pool. */
  const controlEnv: Record<string, string> = control ? { WSFPM_CONTROL: control.address, WSFPM_CONTROL_TOKEN: controlToken } : {};

  let fpm: FpmAddress;
  let fpmStatus = config.fpmStatus;
  let managed: ManagedFpm | null = null;
  if (config.fpm.kind === 'managed') {
    managed = await ManagedFpm.start({
      env: controlEnv,
      // Headroom: a connection's worker stays busy for a moment (up to closeGrace) after its client left.
      maxChildren: Math.ceil(config.maxConnections * 1.1) + 1,
      user: config.fpmUser,
      inheritFrom: config.fpmInherit,
      binary: '',
      log: app.log as unknown as Log,
      onLost: () => closeAll(1012, 'php-fpm restarting'),
    });
    const m = managed;
    app.addHook('onClose', async () => m.stop());
    fpm = managed.address;
    fpmStatus = managed.statusAddress;
  } else {
    fpm = config.fpm;
  }
  function closeAll(code: number, reason: string): void {
    for (const ws of app.websocketServer.clients) ws.close(code, reason);
  }
  const resolver = new Resolver({ root: config.root, index: config.index, routes: config.routes });
  let live = 0;
  const perIp = new Map<string, number>();
  const bridges = new Set<BridgeHandle>();
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

  await app.register(fastifyWebsocket, {
    options: {
      maxPayload: config.maxMessage,
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

  app.websocketServer.on('headers', (headers: string[], req: IncomingMessage) => {
    const binding = (req as RawWithBinding)[kBinding];
    if (binding) headers.push(...binding.extraHeaders);
  });

  const refuse = (reply: FastifyReply, error: WsfpmError, log: Log, facts: object): FastifyReply => {
    const level = error.status >= 500 ? 'warn' : 'info';
    log[level]({ ...facts, status: error.status, code: error.code, detail: error.detail }, 'websocket upgrade refused');
    // Names the cause for `wsfpm doctor` and for people reading curl output; the body says it in words.
    reply.header('x-wsfpm-error', error.code);
    metrics.rejects.inc({ reason: error.code });
    if (error.status === 503) reply.header('retry-after', '5');
    if (error.status === 426) reply.header('upgrade', 'websocket');
    return reply.code(error.status).type('text/plain; charset=utf-8').send(`${error.message.split(':')[0]}\n`);
  };

  async function decide(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (!request.ws) return;
    // Other upgrades (h2c) are not ours: a page, as if there were no Upgrade header.
    if (pages && String(request.raw.headers.upgrade ?? '').toLowerCase() !== 'websocket') return void (await pages(request, reply));
    // In front of a site: upgrades that are not wsfpm's go on to it (front.ts).
    if (front && !(await front.owns(request.raw))) return front.upgrade(request, reply);
    const raw = request.raw as RawWithBinding;
    const socket = raw.socket;
    const id = randomBytes(16).toString('hex');
    const log = (request.log as unknown as Log).child({ conn: id });
    const client = clientOf(config.trustProxy, raw);
    const facts = { path: raw.url, ip: client.remoteAddress, via: client.via };

    const pathOnly = (raw.url ?? '/').split('?')[0]!;
    if (pathOnly.endsWith(DOCTOR_SUFFIX)) {
      if ((raw.url ?? '').endsWith('?idle')) {
        raw[kIdleProbe] = true;
        return;
      }
      return void reply.code(200).header('cache-control', 'no-store').send(diagnose(config, VERSION, raw, client));
    }

    const early = checkHandshake(raw.method ?? '', raw.headers) ?? checkOrigin(raw.headers.origin, client.host, config.origins);
    if (early) return void refuse(reply, early, log, facts);
    if (draining) return void refuse(reply, wsfpmError('WSFPM_ERR_DRAINING'), log, facts);
    if (live >= config.maxConnections) return void refuse(reply, wsfpmError('WSFPM_ERR_TOO_MANY', `${live} open`), log, facts);
    const fromIp = perIp.get(client.remoteAddress) ?? 0;
    if (fromIp >= config.maxPerIp) return void refuse(reply, wsfpmError('WSFPM_ERR_TOO_MANY_FROM_IP', `${fromIp} open from ${client.remoteAddress}`), log, facts);
    // The slot is taken now, before any await: concurrent upgrades must see each other in the counts.
    live++;
    perIp.set(client.remoteAddress, fromIp + 1);
    let released = false;
    function release(): void {
      if (released) return;
      released = true;
      live--;
      const n = (perIp.get(client.remoteAddress) ?? 1) - 1;
      if (n > 0) perIp.set(client.remoteAddress, n);
      else perIp.delete(client.remoteAddress);
    }
    if (fpmStatus) {
      const full = await poolIsFull(fpmStatus, log);
      if (full) {
        release();
        return void refuse(reply, full, log, facts);
      }
    }
    const url = raw.url ?? '/';
    const q = url.indexOf('?');
    const script = await resolver.resolve(q === -1 ? url : url.slice(0, q));
    if (!script) {
      release();
      return void refuse(reply, wsfpmError('WSFPM_ERR_NOT_FOUND', url.slice(0, 200)), log, facts);
    }
    // A client that left while we looked: nothing to open.
    if (socket.destroyed) return release();
    const params = buildParams({
      method: 'GET',
      url,
      rawHeaders: raw.rawHeaders,
      remoteAddress: client.remoteAddress,
      remotePort: client.remotePort,
      localAddress: socket.localAddress ?? '',
      localPort: socket.localPort ?? 0,
      https: client.https,
      host: client.host,
      connectionId: id,
      maxMessage: config.maxMessage,
      extra: { ...controlEnv, WSFPM_MAX_CHANNELS: String(config.maxChannels) },
    }, script);
    const php = new PhpEndpoint(fpm, params, { maxMessage: config.maxMessage, maxHeaderBlock: config.maxHeaderBlock }, log);
    const binding: Binding = { id, ip: client.remoteAddress, php, protocol: false, extraHeaders: [], attached: false, log };
    // Until the route attaches, a client that leaves takes its PHP request with it.
    socket.once('close', () => {
      if (!binding.attached) {
        php.destroy();
        release();
      }
    });

    let head: CgiHead;
    try {
      const asked = process.hrtime.bigint();
      head = await php.waitHead(config.handshakeTimeout, Math.min(1000, config.handshakeTimeout));
      metrics.headerWait.observe(Number(process.hrtime.bigint() - asked) / 1e9);
    } catch (err) {
      php.destroy();
      release();
      return void refuse(reply, err instanceof WsfpmError ? err : wsfpmError('WSFPM_ERR_PHP_DIED', String(err)), log, facts);
    }

    if (head.status !== 101) {
      const body = await php.body(config.maxRejectBody);
      php.destroy();
      release();
      log.info({ ...facts, status: head.status }, 'PHP refused the upgrade');
      metrics.rejects.inc({ reason: `php_${head.status}` });
      for (const [name, values] of groupHeaders(head.headers)) {
        if (!HOP_BY_HOP.has(name)) reply.header(name, values.length === 1 ? values[0]! : values);
      }
      return void reply.code(head.status).send(body);
    }

    const offered = String(raw.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    for (const [name, value] of head.headers) {
      const lower = name.toLowerCase();
      if (lower === 'sec-websocket-protocol') {
        if (!offered.includes(value)) {
          php.destroy();
          release();
          return void refuse(reply, wsfpmError('WSFPM_ERR_PHP_HEADERS', `PHP chose subprotocol ${JSON.stringify(value)}, which the client did not offer`), log, facts);
        }
        binding.protocol = value;
      } else if (lower === 'set-cookie' || (lower.startsWith('x-') && lower !== 'x-powered-by')) {
        binding.extraHeaders.push(`${name}: ${value}`);
      }
    }
    raw[kBinding] = binding;
    binding.release = release;
  }

  // Standalone mode: requests that are not upgrades get PHP pages and static files (pages.ts).
  const pages = config.pages ? await registerPages(app, config, resolver, app.log as unknown as Log, fpm, controlEnv) : null;
  // In front of a site: requests that are not wsfpm's websockets go to it (front.ts).
  const front = config.upstream ? await registerFront(app, config, app.log as unknown as Log) : null;
  if (config.redirectPort) registerRedirect(app, config, app.log as unknown as Log);
  // pusher-js / laravel-echo on /app/KEY and the Pusher HTTP API (src/pusher/).
  if (config.pusherApps.length > 0) await registerPusher(app, { config: () => config, hub, broker, fpm, log: app.log as unknown as Log });
  app.route({
    method: 'GET',
    url: '/*',
    preValidation: decide,
    handler: pages ?? front?.web ?? ((_request, reply) => {
      const error = wsfpmError('WSFPM_ERR_NOT_UPGRADE');
      reply.code(error.status).header('upgrade', 'websocket').header('x-wsfpm-error', error.code).type('text/plain; charset=utf-8').send(`${error.message}\n`);
    }),
    wsHandler: (socket: WebSocket, request: FastifyRequest) => {
      if ((request.raw as RawWithBinding)[kIdleProbe]) return holdIdle(socket);
      const binding = (request.raw as RawWithBinding)[kBinding]!;
      binding.attached = true;
      binding.log.info({ path: request.raw.url, ip: binding.ip, protocol: binding.protocol || undefined }, 'websocket open');
      metrics.open.inc();
      metrics.opened.inc();
      const opened = Date.now();
      const handle = bridge(socket, binding.php, { id: binding.id, path: (request.raw.url ?? '/').split('?')[0]!, ip: binding.ip }, hub, config, binding.log, observer, (code) => {
        bridges.delete(handle);
        metrics.open.dec();
        metrics.closed.inc({ code: String(code) });
        metrics.duration.observe((Date.now() - opened) / 1000);
        binding.release?.();
      });
      bridges.add(handle);
    },
  });

  return {
    app,
    connections: () => live,
    metrics,
    /**
     * Graceful stop: no new upgrades (503), every PHP script is told the
     * connection is closing (CLOSE 1001, then EOF), clients get 1001 once
     * their script has sent what it had; after `graceMs` the rest are
     * closed with 1001 at once. Resolves when no connection is left.
     */
    async drain(graceMs: number) {
      draining = true;
      app.server.close();
      for (const b of bridges) b.drain();
      const deadline = Date.now() + graceMs;
      while (live > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      for (const b of bridges) b.terminate(1001, 'server shutting down');
      while (live > 0 && Date.now() < deadline + 2000) await new Promise((r) => setTimeout(r, 20));
    },
    closeAll,
    managed,
    hub,
    broker,
    control: control ? { address: control.address, token: controlToken } : null,
    reloadTls: () => reloadTls(app.server as unknown as TlsServer, config, app.log as unknown as Log),
    reload(next) {
      const changed = (Object.keys(next) as Array<keyof Config>).filter((k) => !sameSetting(config[k], next[k]));
      const needRestart = changed.filter((k) => !RELOADABLE.has(k));
      const merged = { ...next } as Record<string, unknown>;
      for (const k of needRestart) merged[k] = config[k];
      // Every closure of this daemon reads `config` when it runs: new upgrades see the new values.
      config = Object.freeze(merged) as unknown as Config;
      app.log.level = config.logLevel;
      return { applied: changed.filter((k) => RELOADABLE.has(k)), needRestart };
    },
  };
}

