/**
 * The Pusher face of the daemon, on its public port when `--pusher-apps`
 * is set: pusher-js / laravel-echo websockets on `/app/KEY` and the HTTP
 * API on `/apps/ID/…`, both on the daemon's one hub.
 *
 * The websocket route only takes upgrades (a route constraint on the
 * Upgrade header): a plain GET /app/… stays the site's page, in --pages and
 * front mode alike. Any upgrade on /app/KEY is the Pusher protocol's, so an
 * unknown key gets the protocol's answer (4001), not a 404.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import { type Hub } from '../hub/hub.ts';
import { type RedisBroker } from '../hub/redis-broker.ts';
import { type Config } from '../config.ts';
import { type Log } from '../log.ts';
import { clientOf } from '../server/forwarded.ts';
import { registerHttpApi } from './http-api.ts';
import { Presence, type PresenceStore } from './presence.ts';
import { RedisPresence } from './presence-redis.ts';
import { memberRemoved } from './messages.ts';
import { refuseConnection, servePusher, type PusherHandle, type PusherObserver } from './connection.ts';
import { type Metrics } from '../metrics.ts';
import { Webhooks } from './webhooks.ts';
import { type FpmAddress } from '../fastcgi/address.ts';

export interface PusherOptions {
  /** The running configuration (it changes on SIGHUP; new connections read it when they open). */
  config: () => Config;
  hub: Hub;
  /** With --redis: presence is kept there, the same on every node. */
  broker: RedisBroker | null;
  /** php-fpm, for the apps' webhook scripts. */
  fpm: FpmAddress;
  metrics: Metrics;
  log: Log;
}

const SUPPORTED_PROTOCOLS = new Set(['5', '6', '7']);

/** The websocket path pusher-js connects to, `/app/KEY`: upgrades to it go to this face's route. */
export function isPusherSocketPath(path: string): boolean {
  return path.startsWith('/app/') && path.length > 5 && path.indexOf('/', 5) === -1;
}

export async function registerPusher(app: FastifyInstance, options: PusherOptions): Promise<void> {
  const { hub } = options;
  const log = options.log.child({ face: 'pusher' });
  const apps = options.config().pusherApps;
  const local = new Presence();
  const presence: PresenceStore = options.broker
    ? new RedisPresence(options.broker, local, log, (channel, userId) => hub.publish(channel, memberRemoved(userId), false, null))
    : local;
  const webhooks = new Webhooks(options.fpm, () => options.config().root, log);
  let open = 0;
  const handles = new Set<PusherHandle>();
  // preClose runs before every onClose hook, so before the Redis broker stops.
  app.addHook('preClose', async () => {
    await Promise.all([...handles].map((h) => h.leaveAll()));
  });
  options.metrics.watchPusher(() => open);
  const observer: PusherObserver = {
    refused: (code) => options.metrics.pusherErrors.inc({ code }),
    published: (source) => options.metrics.pusherEvents.inc({ source }),
  };
  const perIp = new Map<string, number>();

  app.addConstraintStrategy({
    name: 'wsfpmUpgrade',
    storage() {
      const handlers = new Map<string, unknown>();
      return { get: (k: string) => (handlers.get(k) ?? null) as never, set: (k: string, v: unknown) => void handlers.set(k, v) };
    },
    deriveConstraint: (req: { headers: Record<string, string | string[] | undefined> }) => String(req.headers.upgrade ?? '').toLowerCase(),
    mustMatchWhenDerived: false,
  });

  app.route({
    method: 'GET',
    url: '/app/:key',
    constraints: { wsfpmUpgrade: 'websocket' },
    handler: async (_request, reply) => reply.code(426).header('upgrade', 'websocket').send('this endpoint only speaks websocket\n'),
    wsHandler: (ws: WebSocket, request: FastifyRequest) => {
      const config = options.config();
      const key = (request.params as { key: string }).key;
      const query = request.query as Record<string, string | undefined>;
      const ip = clientOf(config.trustProxy, request.raw).remoteAddress;
      const pusherApp = apps.find((a) => a.key === key);
      const refusalLog = log.child({ ip });
      if (!pusherApp) return refuseConnection(ws, 'WSFPM_ERR_PUSHER_UNKNOWN_APP', `key ${JSON.stringify(key.slice(0, 64))}`, refusalLog, observer);
      if (query.protocol === undefined) return refuseConnection(ws, 'WSFPM_ERR_PUSHER_NO_PROTOCOL', 'no ?protocol=', refusalLog, observer);
      if (!SUPPORTED_PROTOCOLS.has(String(query.protocol))) return refuseConnection(ws, 'WSFPM_ERR_PUSHER_PROTOCOL_VERSION', `protocol ${String(query.protocol).slice(0, 16)}; 5 to 7 are spoken`, refusalLog, observer);
      const fromIp = perIp.get(ip) ?? 0;
      // Like an events-mode connection, a Pusher one holds no worker: the larger limit of those applies.
      if (open >= config.maxEventConnections) return refuseConnection(ws, 'WSFPM_ERR_PUSHER_OVER_QUOTA', `${open} open (--max-event-connections)`, refusalLog, observer);
      if (fromIp >= config.maxPerIp) return refuseConnection(ws, 'WSFPM_ERR_PUSHER_OVER_QUOTA', `${fromIp} open from ${ip} (--max-per-ip)`, refusalLog, observer);
      open++;
      perIp.set(ip, fromIp + 1);
      const handle = servePusher(ws, pusherApp, { ip }, config, { hub, presence, webhooks, observer, log }, () => {
        handles.delete(handle);
        open--;
        const n = (perIp.get(ip) ?? 1) - 1;
        if (n > 0) perIp.set(ip, n);
        else perIp.delete(ip);
      });
      handles.add(handle);
    },
  });

  await registerHttpApi(app, apps, { hub, presence, observer, log });
}
