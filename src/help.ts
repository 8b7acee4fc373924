/**
 * One line per setting, shown by `wsfpm --help` and rendered into
 * docs/configuration.md (`npm run docs:config`; a test keeps the two equal).
 */
import { DEFAULTS } from './defaults.ts';
import { envName, flagName } from './config.ts';

export const HELP: Record<keyof typeof DEFAULTS, string> = {
  host: 'address to listen on',
  port: 'port to listen on (0: any free port)',
  fpm: 'php-fpm address: unix:/path.sock, tcp:HOST:PORT, several separated by commas (one per master), or managed (php-fpm masters of wsfpm\'s own)',
  fpmStatus: 'php-fpm pm.status_listen address(es), one per --fpm pool: refuse upgrades with 503 while no worker is idle',
  fpmMasterWorkers: 'managed: most workers per php-fpm master; more connections start more masters',
  fpmUser: 'managed pool: worker user when wsfpm runs as root',
  sideChannel: 'auto: give bound PHP scripts a private unix socket for their frames (falls back to STDIN/STDOUT); off',
  sideChannelDir: 'side channel: where its 0750 directory goes; empty: $RUNTIME_DIRECTORY, else the temp dir',
  sideChannelGroup: 'side channel: group allowed into its directory; empty: the php-fpm socket\'s group',
  fpmInherit: 'managed pool: the site\'s pool file to copy php_value/env settings from',
  root: 'document root; URL paths map to .php scripts below it (default: current directory)',
  index: 'front controller for paths with no script of their own ("" disables)',
  routes: 'explicit routes, comma-separated: /url=script.php',
  pages: 'serve PHP pages and static files for requests that are not websocket upgrades (true/false)',
  upstream: 'in front of a site: URL of the web server behind (http://127.0.0.1:8080) that gets every other request ("": not in front)',
  upstreamTimeout: 'in front: how long the site behind may take to start answering a whole request, ms; then 504',
  wsPaths: 'in front: URL path prefixes whose websocket upgrades are wsfpm\'s, comma-separated (/ws/); "": any path that names a script under --root',
  tlsCert: 'PEM certificate chain file: the listener speaks HTTPS/WSS (with --tls-key; SIGHUP reloads both)',
  tlsKey: 'PEM private key file of --tls-cert',
  redirectPort: 'with TLS: plain-HTTP port answering 301 to the same URL on https (0: none)',
  maxMessage: 'largest message either way, bytes; a bigger client message closes with 1009',
  handshakeTimeout: 'how long PHP may take to accept or refuse, ms; then 503',
  pingInterval: 'server ping interval, ms (0 disables); a silent client is dropped after two',
  closeGrace: 'time PHP gets to finish after the websocket ends, ms',
  stallTimeout: 'a client that stops reading for this long (with highWater bytes waiting) is closed with 1013, ms',
  highWater: 'bytes buffered toward one side before the other is paused',
  control: 'control API listener for publish/send/presence: tcp:127.0.0.1:PORT or unix:/path ("" disables); never public',
  controlToken: 'bearer token of the control API (at least 16 characters; default: random per start)',
  doctorToken: 'token for wsfpm doctor --token: with it /.wsfpm-doctor also tells the version, --trust-proxy, ping interval and the proxy\'s address (at least 16 characters; "": to nobody)',
  pusherApps: 'Pusher protocol apps ID:KEY:SECRET[:client-events[=N]][:webhook=/script.php], comma-separated: pusher-js/laravel-echo on /app/KEY, the HTTP API on /apps/ID/ ("": off)',
  maxChannels: 'channel subscriptions one connection may hold',
  historySize: 'messages a channel keeps for reconnecting clients, for channels subscribed with history (0: history off)',
  historyTtl: 'how long a channel\'s messages are kept for resuming, and its history after the last history subscription, ms',
  historyChannels: 'channels keeping history in memory at once (without --redis); past it the least recently used is forgotten',
  redis: 'Redis URL shared by several wsfpm nodes (channels, presence, sends by id); "" for one node',
  trustProxy: 'proxies whose X-Forwarded-* headers are believed: IPs or CIDRs ("" trusts none)',
  allowOrigins: 'origins allowed besides the same host, comma-separated (* for any)',
  maxConnections: 'bound websocket connections at most (each holds a php-fpm worker; sizes a managed pool); more get 503',
  maxEventConnections: 'events-mode connections at most, and Pusher ones apart (no worker each; one file descriptor each); more get 503 (Pusher: 4004)',
  eventConcurrency: 'events mode: event requests running at once, all connections together (leave the pool room for pages)',
  eventTimeout: 'events mode: how long one event may take from queued to answered, ms; then close 1011',
  eventQueue: 'events mode: client messages queued per connection while its event runs; beyond, its socket is paused',
  maxMeta: 'events mode: largest meta a script may keep in the daemon per connection, bytes',
  maxPerIp: 'open websocket connections from one client address at most; more get 429',
  messageRate: 'messages per second one client may send (1 s burst); more close 1008; 0 disables',
  requestTimeout: 'how long a client may take to send its request headers, ms; then 408',
  drainTimeout: 'on SIGTERM, how long connections get to finish before closing with 1001, ms',
  maxRejectBody: 'largest body PHP may send when refusing an upgrade, bytes',
  maxHeaderBlock: 'largest CGI header block PHP may send, bytes',
  logLevel: 'fatal, error, warn, info, debug, trace or silent',
};

/** docs/configuration.md, from DEFAULTS and HELP. */
export function configurationMarkdown(): string {
  const rows = (Object.keys(DEFAULTS) as Array<keyof typeof DEFAULTS>).map((key) => {
    const d = DEFAULTS[key];
    const shown = d === '' ? '(empty)' : `\`${String(d)}\``;
    return `| \`${flagName(key)}\` | \`${envName(key)}\` | ${shown} | ${HELP[key].replace(/\|/g, '\\|')} |`;
  });
  return [
    '# Configuration reference',
    '',
    '<!-- Generated from src/defaults.ts and src/help.ts by `npm run docs:config`; a test fails when this file is stale. -->',
    '',
    'Every setting is a flag, a `WSFPM_*` environment variable, or a line in `.env` in the working directory',
    '(`--env-file PATH` names another file). Flags win over the environment, which wins over `.env`.',
    'Sizes take `k`, `m`, `g` suffixes (`--max-message 4m`); times take `ms`, `s`, `m`, `h` (`--ping-interval 20s`).',
    'A bad value stops start-up with a message naming the flag, the variable and what is accepted (exit code 2).',
    '',
    '| flag | variable | default | meaning |',
    '|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}
