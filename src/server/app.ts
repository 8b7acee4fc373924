/**
 * The daemon, composed: fastify, the hub (and Redis broker), the control
 * API, the php-fpm pool (managed or the site's), the upgrade path with its
 * bound and events strategies, and the page, front-proxy and redirect
 * roles. Each part is built from its slice of the config; this file only
 * wires them.
 */
import { randomBytes } from 'node:crypto';
import type { Server as TlsServer } from 'node:tls';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import { Metrics } from '../metrics.ts';
import { type FpmAddress } from '../fastcgi/address.ts';
import { readPoolStatus } from '../fpm/status.ts';
import { keepHistory } from '../hub/history-keeper.ts';
import { RELOADABLE, sameSetting } from './reload.ts';
import { ManagedFpm } from '../fpm/supervisor.ts';
import { FpmSet } from '../fpm/fpm-set.ts';
import { startControl } from '../control/server.ts';
import { Hub } from '../hub/hub.ts';
import { RedisBroker } from '../hub/redis-broker.ts';
import { type Config } from '../config.ts';
import { type Log } from '../log.ts';
import { registerPages } from './pages.ts';
import { registerFront } from './front.ts';
import { registerRedirect } from './redirect.ts';
import { isPusherSocketPath, registerPusher } from '../pusher/register.ts';
import { reloadTls, serverOptions } from './tls.ts';
import { Resolver } from './resolve.ts';
import { registerUpgrades, type Upgrades } from '../upgrade/upgrade.ts';
import { openSideChannel, type SideChannelListener } from '../bridge/side-channel.ts';

export interface Daemon {
  app: FastifyInstance;
  /** Open websocket connections (bound and events mode) and upgrades PHP is deciding. */
  connections(): number;
  metrics: Metrics;
  drain(graceMs: number): Promise<void>;
  /** Closes every open websocket with `code`. */
  closeAll(code: number, reason: string): void;
  /** The (first) php-fpm master wsfpm runs itself with `--fpm managed`, else null. */
  managed: ManagedFpm | null;
  /** Every master wsfpm runs with `--fpm managed` (one per --fpm-master-workers workers); empty otherwise. */
  masters: readonly ManagedFpm[];
  /** The php-fpm masters upgrades are spread over. */
  fpms: FpmSet;
  /** The side-channel listener bound scripts are offered, or null (off, or it could not be made). */
  sideChannel: SideChannelListener | null;
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
  const log = app.log as unknown as Log;
  const hub = new Hub(config.maxChannels);
  const broker = config.redis ? await RedisBroker.start(config.redis, hub, log) : null;
  if (broker) app.addHook('onClose', async () => broker.stop());
  const stopHistory = keepHistory(hub, { size: config.historySize, ttl: config.historyTtl, channels: config.historyChannels }, broker);
  app.addHook('onClose', async () => stopHistory());
  const controlToken = config.controlToken || randomBytes(24).toString('hex');
  /** Status listeners of the masters, in their order: the site's (--fpm-status) or the managed ones'. */
  let statuses: readonly FpmAddress[] = config.fpmStatus;
  const metrics = new Metrics(
    async () => {
      if (statuses.length === 0) return null;
      const all = await Promise.all(statuses.map((st) => readPoolStatus(st).catch(() => null)));
      if (all.some((st) => st === null)) return null;
      return { busy: all.reduce((n, st) => n + st!.active, 0), idle: all.reduce((n, st) => n + st!.idle, 0) };
    },
    () => broker?.state ?? null,
  );
  const control = config.control ? await startControl({ address: config.control, token: controlToken, maxMessage: config.maxMessage }, hub, metrics, log) : null;
  if (control) app.addHook('onClose', async () => control.close());
  /** What PHP needs to reach the control API: CGI params of bound scripts, env of a managed pool. */
  const controlEnv: Record<string, string> = control ? { WSFPM_CONTROL: control.address, WSFPM_CONTROL_TOKEN: controlToken } : {};

  let upgrades: Upgrades | null = null;
  // Filled in once the masters are known; only their crash hooks read it before.
  let fpms: FpmSet | null = null;
  const masters: ManagedFpm[] = [];
  let pools: readonly FpmAddress[];
  if (config.fpm.kind === 'managed') {
    // Headroom: a connection's worker stays busy for a moment (up to closeGrace) after its client left.
    const workers = Math.ceil(config.maxConnections * 1.1) + 1;
    const count = Math.ceil(workers / config.fpmMasterWorkers);
    const each = Math.ceil(workers / count);
    const started = await Promise.allSettled(Array.from({ length: count }, (_, i) => ManagedFpm.start({
      env: controlEnv,
      // Event calls, pages and webhooks go to the first master: it gets their workers besides.
      maxChildren: each + (i === 0 ? config.eventConcurrency : 0),
      user: config.fpmUser,
      inheritFrom: config.fpmInherit,
      binary: '',
      log,
      onLost: () => {
        const target = fpms?.targets[i];
        if (!target) return;
        target.down = true;
        upgrades?.closeBound(1012, 'php-fpm restarting', target);
      },
      onBack: () => {
        const target = fpms?.targets[i];
        if (target) target.down = false;
      },
    })));
    for (const r of started) if (r.status === 'fulfilled') masters.push(r.value);
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await Promise.all(masters.map((m) => m.stop()));
      throw failed.reason;
    }
    app.addHook('onClose', async () => void (await Promise.all(masters.map((m) => m.stop()))));
    pools = masters.map((m) => m.address);
    statuses = masters.map((m) => m.statusAddress);
  } else {
    pools = config.fpm.pools;
  }
  fpms = new FpmSet(pools, statuses, log);
  const fpm = fpms.first;
  const managed = masters[0] ?? null;
  const channel = config.sideChannel === 'auto'
    ? await openSideChannel({
      dir: config.sideChannelDir,
      group: config.sideChannelGroup,
      // A managed pool's workers run with the group named like their user (pool.ts).
      fallbackGroup: managed ? config.fpmUser : '',
      fpmSocket: fpm.kind === 'unix' ? fpm.path : null,
    }, log)
    : null;
  if (channel) app.addHook('onClose', async () => channel.close());
  const resolver = new Resolver({ root: config.root, index: config.index, routes: config.routes });
  const parts = await registerUpgrades(app, { config: () => config, fpms, resolver, hub, metrics, controlEnv, channel, log });
  upgrades = parts;
  // Standalone mode: requests that are not upgrades get PHP pages and static files (pages.ts).
  const pages = config.pages ? await registerPages(app, config, resolver, log, fpm, controlEnv) : null;
  // In front of a site: requests that are not wsfpm's websockets go to it (front.ts).
  const front = config.upstream ? await registerFront(app, config, log) : null;
  if (config.redirectPort) registerRedirect(app, config, log);
  // pusher-js / laravel-echo on /app/KEY and the Pusher HTTP API (src/pusher/).
  const pusher = config.pusherApps.length > 0;
  if (pusher) await registerPusher(app, { config: () => config, hub, broker, fpm, metrics, log });
  parts.route({ pages, front, delegate: pusher ? isPusherSocketPath : undefined });
  // The Pusher HTTP API (/apps/ID/…) is the only HTTP route of wsfpm's own beside a site it is in front of.
  front?.takeRequests(pusher ? (p) => p.startsWith('/apps/') : () => false);

  return {
    app,
    connections: parts.connections,
    metrics,
    async drain(graceMs: number) {
      app.server.close();
      await parts.drain(graceMs);
    },
    closeAll(code, reason) {
      for (const ws of app.websocketServer.clients) ws.close(code, reason);
    },
    managed,
    masters,
    fpms,
    sideChannel: channel,
    hub,
    broker,
    control: control ? { address: control.address, token: controlToken } : null,
    reloadTls: () => reloadTls(app.server as unknown as TlsServer, config, log),
    reload(next) {
      const changed = (Object.keys(next) as Array<keyof Config>).filter((k) => !sameSetting(config[k], next[k]));
      const needRestart = changed.filter((k) => !RELOADABLE.has(k));
      const merged = { ...next } as Record<string, unknown>;
      for (const k of needRestart) merged[k] = config[k];
      // Every part reads `config` through its getter when it runs: new upgrades see the new values.
      config = Object.freeze(merged) as unknown as Config;
      app.log.level = config.logLevel;
      return { applied: changed.filter((k) => RELOADABLE.has(k)), needRestart };
    },
  };
}
