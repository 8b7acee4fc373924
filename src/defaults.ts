/**
 * The one place wsfpm's defaults live. Every limit is on by default; each
 * entry names its unit, and `bounds` gives the range config accepts so a bad
 * value stops start-up with a message instead of misbehaving later.
 */

const KiB = 1024;
const MiB = 1024 * KiB;

export const DEFAULTS = Object.freeze({
  /** Address to listen on. Loopback: wsfpm normally sits behind a web server. */
  host: '127.0.0.1',
  /** TCP port to listen on; 0 picks a free one. */
  port: 8740,
  /** php-fpm address: `unix:/path.sock`, `tcp:HOST:PORT`, several of them separated by commas (one per master; upgrades go to the one holding fewest), or `managed` (wsfpm runs its own php-fpm masters). */
  fpm: 'unix:/run/php/php-fpm.sock',
  /** Each pool's `pm.status_listen` address, in the order of --fpm; when set, upgrades are refused with 503 while no worker is idle. Automatic for managed. */
  fpmStatus: '',
  /** Managed: most workers one php-fpm master runs (a worker's memory grows with the number forked before it); more connections get more masters. */
  fpmMasterWorkers: 1_000,
  /** Managed pool: user its workers run as when wsfpm runs as root; empty keeps wsfpm's user. */
  fpmUser: '',
  /** Managed pool: the site's pool file whose php_value/php_admin_value/env lines it copies. */
  fpmInherit: '',
  /** Side channel for bound connections (docs/protocol.md): `auto` offers each PHP script a private unix socket for its frames (it falls back to STDIN/STDOUT where it cannot reach it); `off` never offers one. */
  sideChannel: 'auto',
  /** Side channel: directory its listener's own 0750 directory goes in; empty: $RUNTIME_DIRECTORY (systemd), else the temp dir. Must be visible to php-fpm (not a PrivateTmp /tmp). */
  sideChannelDir: '',
  /** Side channel: group (name or gid) that may enter its directory, the pool's workers'; empty: the group of the php-fpm unix socket (managed: the pool user's). */
  sideChannelGroup: '',
  /** Document root: URL paths map to scripts below it. Empty: the working directory. */
  root: '',
  /** Front controller for paths with no script of their own; empty disables it. */
  index: 'index.php',
  /** Explicit routes, `/path=script.php,...`, checked before the file system. */
  routes: '',
  /** Serve PHP pages and static files for requests that are not websocket upgrades (standalone mode, no web server in front). */
  pages: false,
  /** In front of a site: URL of the web server behind (`http://127.0.0.1:8080`) that gets every request wsfpm does not answer itself; empty: not in front. */
  upstream: '',
  /** In front: how long the site behind may take to start its answer once it has the whole request, ms; then 504. */
  upstreamTimeout: 60_000,
  /** In front: URL path prefixes whose websocket upgrades are wsfpm's (`/ws/,/live/`); empty: every upgrade whose path names a script under --root. */
  wsPaths: '',
  /** PEM certificate chain; with tlsKey the listener speaks HTTPS/WSS (reloaded from disk on SIGHUP). */
  tlsCert: '',
  /** PEM private key of tlsCert. */
  tlsKey: '',
  /** With TLS: a plain-HTTP port that answers 301 to the same URL on https; 0: none. */
  redirectPort: 0,
  /** Largest websocket message either way, bytes (client overflow closes 1009). */
  maxMessage: 1 * MiB,
  /** How long PHP may take to answer the upgrade with its header block, ms. */
  handshakeTimeout: 5_000,
  /** Interval between server pings; a peer silent for two intervals is dropped, ms. 0 disables. */
  pingInterval: 25_000,
  /** After the websocket ends, how long PHP gets to finish before its socket is closed, ms. */
  closeGrace: 5_000,
  /** Bytes buffered toward one side before the other side is paused. */
  highWater: 1 * MiB,
  /** A client that has not read what is buffered toward it (over highWater) for this long is closed with 1013, ms. */
  stallTimeout: 60_000,
  /** Control API listener (publish, send, presence) for page requests and backends: `tcp:127.0.0.1:PORT` or `unix:/path`; never public; empty disables. */
  control: 'tcp:127.0.0.1:8741',
  /** Bearer token the control API requires; empty: a random one per start (handed to a managed pool). */
  controlToken: '',
  /** Token `wsfpm doctor --token` sends to see the daemon's version, --trust-proxy list, ping interval and the proxy's address on /.wsfpm-doctor; empty: everyone gets only what their own request showed. */
  doctorToken: '',
  /** Redis for many nodes (`redis://host:6379/0`): channels, presence and sends-by-id shared across daemons; empty: this node alone. */
  redis: '',
  /** Pusher protocol apps, `ID:KEY:SECRET[:client-events[=N]][:webhook=/script.php]` comma-separated: pusher-js/laravel-echo on `/app/KEY` and the Pusher HTTP API on `/apps/ID/…`; empty: off. */
  pusherApps: '',
  /** Channel subscriptions one connection may hold. */
  maxChannels: 100,
  /** Messages a channel keeps for clients that reconnect (only channels a subscription asked history of); 0 turns history off. */
  historySize: 100,
  /** How long a channel's messages are kept for resuming, and how long the channel keeps history after its last history subscription, ms. */
  historyTtl: 300_000,
  /** Channels keeping history in this node's memory at once; past it the least recently used one is forgotten (its clients are told "lost"). */
  historyChannels: 10_000,
  /** Proxies whose X-Forwarded-For/-Host/-Proto are believed: IPs or CIDR ranges, comma-separated; empty trusts none. */
  trustProxy: '127.0.0.1,::1',
  /** Origins allowed besides the request's own host, comma-separated; `*` allows any. */
  allowOrigins: '',
  /** Bound websocket connections (each holds a php-fpm worker) at most; further upgrades get 503. Sizes a managed pool. */
  maxConnections: 1_000,
  /** Events-mode connections at most, and Pusher-protocol ones counted apart (held by the daemon, no worker each); further ones get 503 (Pusher: 4004). Each needs a file descriptor: raise `ulimit -n` to match. */
  maxEventConnections: 10_000,
  /** Event requests (events mode) running at once across all connections; leave the pool room for pages. */
  eventConcurrency: 8,
  /** How long one event request may take to answer, from when it was queued for a worker, ms; then the connection closes with 1011. */
  eventTimeout: 30_000,
  /** Client messages queued per events-mode connection while its previous event runs; beyond it the client's socket is paused. */
  eventQueue: 32,
  /** Largest meta (the state an events-mode script keeps in the daemon between events), bytes. */
  maxMeta: 4 * KiB,
  /** Open websocket connections from one client address (after --trust-proxy) at most; more get 429. */
  maxPerIp: 100,
  /** Messages per second one client may send (a one-second burst allowed); more: close 1008. 0 disables. */
  messageRate: 1_000,
  /** How long a client may take to send its request headers (slowloris), ms. */
  requestTimeout: 10_000,
  /** On SIGTERM, how long connections get to finish before they are closed with 1001, ms. */
  drainTimeout: 10_000,
  /** Largest response body PHP may send when it refuses an upgrade, bytes. */
  maxRejectBody: 64 * KiB,
  /** Largest CGI header block PHP may send, bytes. */
  maxHeaderBlock: 32 * KiB,
  /** pino log level. */
  logLevel: 'info',
});

export type Defaults = typeof DEFAULTS;

/** Accepted ranges for numeric settings: [min, max]. */
export const BOUNDS: Readonly<Record<string, readonly [number, number]>> = Object.freeze({
  port: [0, 65535],
  upstreamTimeout: [100, 3_600_000],
  redirectPort: [0, 65535],
  maxMessage: [1, 64 * MiB],
  handshakeTimeout: [100, 600_000],
  pingInterval: [0, 3_600_000],
  closeGrace: [0, 600_000],
  highWater: [16 * KiB, 64 * MiB],
  stallTimeout: [1_000, 3_600_000],
  maxConnections: [1, 1_000_000],
  fpmMasterWorkers: [1, 100_000],
  maxChannels: [1, 100_000],
  historySize: [0, 10_000],
  historyTtl: [1_000, 86_400_000],
  historyChannels: [1, 1_000_000],
  maxPerIp: [1, 1_000_000],
  maxEventConnections: [1, 10_000_000],
  eventConcurrency: [1, 4_096],
  eventTimeout: [100, 600_000],
  eventQueue: [1, 100_000],
  maxMeta: [0, 64 * KiB],
  messageRate: [0, 1_000_000],
  requestTimeout: [1_000, 600_000],
  drainTimeout: [0, 3_600_000],
  maxRejectBody: [0, 16 * MiB],
  maxHeaderBlock: [1 * KiB, 1 * MiB],
});

/**
 * The Pusher face's limits: the values of Pusher Channels itself, so a site
 * that works there works here. Protocol constants rather than settings,
 * except the client event rate (per app: `client-events=N`).
 */
export const PUSHER = Object.freeze({
  /** Seconds of silence after which pusher-js pings (it is told so in connection_established). */
  activityTimeout: 120,
  /** Client events one connection may send per second (a one-second burst allowed). */
  clientEventRate: 10,
  /** Largest `data` of one event, bytes (client events and HTTP API events alike). */
  maxEventData: 10 * KiB,
  /** Longest event name, characters. */
  maxEventName: 200,
  /** Channels one HTTP API event may go to. */
  maxChannelsPerEvent: 100,
  /** Events in one batch_events request. */
  maxBatch: 10,
  /** Users in one presence channel (a subscription beyond it is refused). */
  maxPresenceMembers: 100,
  /** Largest presence `channel_data` and signin `user_data`, bytes. */
  maxUserData: 1 * KiB,
  /** How far an HTTP API request's auth_timestamp may be from the server's clock, seconds. */
  timestampWindow: 600,
  /** Largest HTTP API request body, bytes (a full batch of maximal events fits). */
  maxBody: 256 * KiB,
  /** Webhook events one request carries at most (Pusher batches too). */
  maxWebhookBatch: 100,
  /** Webhook events waiting for the script, per app; more are dropped (and logged). */
  maxWebhookQueue: 1_000,
  /** How long the webhook script may take, ms. */
  webhookTimeout: 10_000,
});

export const LOG_LEVELS = Object.freeze(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);
