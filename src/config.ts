/**
 * Configuration from flags, WSFPM_* environment variables and a `.env` file
 * (in that order of precedence, over DEFAULTS). Every value is validated
 * here; a bad one stops start-up with a ConfigError naming the flag, the
 * variable and what is accepted. The result is frozen.
 */
import path from 'node:path';
import { BOUNDS, DEFAULTS, LOG_LEVELS, type Defaults } from './defaults.ts';
import { ConfigError } from './errors.ts';
import { parseFpmAddress, type FpmAddress } from './fastcgi/address.ts';
import { parseOriginList, type OriginPolicy } from './server/handshake.ts';
import { parseTrustList, type TrustPolicy } from './server/forwarded.ts';
import { parsePusherApps, type PusherApp } from './pusher/apps.ts';

export type Key = keyof Defaults;

export interface Config {
  host: string;
  port: number;
  /** `managed`, or the site's pools (one or more masters, each with its own socket) upgrades are spread over. */
  fpm: { kind: 'managed' } | { kind: 'pools'; pools: readonly FpmAddress[] };
  /** Each pool's status listener, in the order of `fpm.pools`; empty: none. */
  fpmStatus: readonly FpmAddress[];
  fpmMasterWorkers: number;
  fpmUser: string;
  fpmInherit: string;
  sideChannel: 'auto' | 'off';
  sideChannelDir: string;
  sideChannelGroup: string;
  root: string;
  index: string;
  routes: ReadonlyMap<string, string>;
  pages: boolean;
  /** In front of a site: the origin requests are passed to (`http://127.0.0.1:8080`); '' when not in front. */
  upstream: string;
  upstreamTimeout: number;
  /** URL path prefixes whose upgrades are wsfpm's; empty: decided by the scripts under root. */
  wsPaths: readonly string[];
  /** Absolute paths of the PEM files; '' for plain HTTP. */
  tlsCert: string;
  tlsKey: string;
  redirectPort: number;
  maxMessage: number;
  handshakeTimeout: number;
  pingInterval: number;
  closeGrace: number;
  highWater: number;
  stallTimeout: number;
  origins: OriginPolicy;
  trustProxy: TrustPolicy;
  control: FpmAddress | null;
  controlToken: string;
  doctorToken: string;
  /** Pusher protocol apps; empty: the Pusher face is off. */
  pusherApps: readonly PusherApp[];
  maxChannels: number;
  historySize: number;
  historyTtl: number;
  historyChannels: number;
  redis: string;
  maxConnections: number;
  maxPerIp: number;
  maxEventConnections: number;
  eventConcurrency: number;
  eventTimeout: number;
  eventQueue: number;
  maxMeta: number;
  messageRate: number;
  requestTimeout: number;
  drainTimeout: number;
  maxRejectBody: number;
  maxHeaderBlock: number;
  logLevel: string;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function address(raw: string, listen = false): FpmAddress {
  const a = parseFpmAddress(raw, listen);
  if (typeof a === 'string') throw new Error(a);
  return a;
}

/** `a,b,…`: several php-fpm masters, each its own address. */
function addressList(raw: string): FpmAddress[] {
  const items = raw.split(',').map((s) => s.trim());
  if (items.some((s) => s === '')) throw new Error('expected addresses separated by commas, none empty');
  return items.map((s) => address(s));
}

/** Settings where an empty value means "none" (WSFPM_INDEX= disables the front controller); elsewhere an empty variable counts as unset. */
const EMPTY_MEANS_NONE = new Set<Key>(['index', 'routes', 'allowOrigins', 'trustProxy', 'fpmStatus', 'fpmUser', 'fpmInherit', 'sideChannelDir', 'sideChannelGroup', 'control', 'controlToken', 'doctorToken', 'pusherApps', 'redis', 'upstream', 'wsPaths', 'tlsCert', 'tlsKey']);
/** A user or group name as useradd/groupadd accept it. */
const UNIX_NAME = /^[a-z_][a-z0-9_-]*\$?$/i;
const SECRET_KEYS = new Set<Key>(['controlToken', 'doctorToken', 'pusherApps']);
const SIZE_KEYS = new Set<Key>(['maxMessage', 'highWater', 'maxRejectBody', 'maxHeaderBlock', 'maxMeta']);
const TIME_KEYS = new Set<Key>(['handshakeTimeout', 'pingInterval', 'closeGrace', 'requestTimeout', 'drainTimeout', 'stallTimeout', 'upstreamTimeout', 'eventTimeout', 'historyTtl']);

export const flagName = (key: string): string => '--' + key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
export const envName = (key: string): string => 'WSFPM_' + key.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase();

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1 << 20, mb: 1 << 20, mib: 1 << 20, g: 1 << 30, gb: 1 << 30, gib: 1 << 30 };
const TIME_UNITS: Record<string, number> = { '': 1, ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000 };

function parseNumber(key: Key, raw: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(raw.trim());
  const units = SIZE_KEYS.has(key) ? SIZE_UNITS : TIME_KEYS.has(key) ? TIME_UNITS : { '': 1 };
  const unit = m?.[2]?.toLowerCase() ?? '';
  const factor = m && Object.hasOwn(units, unit) ? units[unit] : undefined;
  const [min, max] = BOUNDS[key] ?? [0, Number.MAX_SAFE_INTEGER];
  const hint = SIZE_KEYS.has(key) ? ' bytes (suffixes k, m, g)' : TIME_KEYS.has(key) ? ' ms (suffixes ms, s, m, h)' : '';
  if (!m || factor === undefined || (unit === '' && m[1]!.includes('.'))) throw new Error(`expected a number${hint} from ${min} to ${max}`);
  const value = Math.round(Number(m[1]) * factor);
  if (!Number.isFinite(value) || value < min || value > max) throw new Error(`${value} is out of range: ${min} to ${max}${hint}`);
  return value;
}

function parseBoolean(raw: string): boolean {
  const v = raw.trim().toLowerCase();
  if (v === 'true' || v === '1' || v === 'yes') return true;
  if (v === 'false' || v === '0' || v === 'no') return false;
  throw new Error('expected true or false (or 1/0, yes/no)');
}

function parseRoutes(raw: string): Map<string, string> {
  const routes = new Map<string, string>();
  for (const item of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = item.indexOf('=');
    const url = item.slice(0, eq);
    const script = item.slice(eq + 1);
    if (eq <= 0 || !url.startsWith('/') || !script.endsWith('.php') || script.split('/').includes('..')) {
      throw new Error(`route ${JSON.stringify(item)}: expected /url/path=script.php with the script inside the root`);
    }
    routes.set(url, script);
  }
  return routes;
}

/** A bearer secret: empty (none), or long enough not to be guessed. */
function parseToken(raw: string): string {
  if (raw && raw.length < 16) throw new Error('use at least 16 characters');
  return raw;
}

/** `http://host:port` only: the site behind sits on loopback or a private network, in plain HTTP. */
function parseUpstream(raw: string): string {
  if (!raw) return '';
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error('expected a URL such as http://127.0.0.1:8080');
  }
  if (url.protocol !== 'http:') throw new Error('expected an http:// URL (the site behind is reached in plain HTTP), such as http://127.0.0.1:8080');
  if (url.username || url.password || url.search || url.hash || url.pathname !== '/') throw new Error('expected scheme, host and port only, such as http://127.0.0.1:8080');
  return url.origin;
}

function parsePathPrefixes(raw: string): string[] {
  const prefixes = raw.split(',').map((s) => s.trim()).filter(Boolean);
  for (const p of prefixes) if (!p.startsWith('/') || /[\s?#]/.test(p)) throw new Error(`${JSON.stringify(p)}: expected URL path prefixes such as /ws/,/live/`);
  return prefixes;
}

/** Settings that only make sense together, or not at all together. */
function checkCombinations(config: Config): void {
  const name = (key: Key): string => `${flagName(key)} (${envName(key)})`;
  if (config.upstream && config.pages) {
    throw new ConfigError(`${name('upstream')} and ${name('pages')} exclude each other: wsfpm either serves the pages itself or passes them to the site behind it`);
  }
  if (config.fpmStatus.length > 0) {
    const pools = config.fpm.kind === 'pools' ? config.fpm.pools.length : 0;
    if (pools === 0) throw new ConfigError(`${name('fpmStatus')} is for the site's own pools: with ${name('fpm')} managed wsfpm reads its masters' status itself`);
    if (config.fpmStatus.length !== pools) throw new ConfigError(`${name('fpmStatus')} names ${config.fpmStatus.length} status address(es) for ${pools} pool(s) in ${name('fpm')}: give one per pool, in the same order`);
  }
  if (config.wsPaths.length > 0 && !config.upstream) throw new ConfigError(`${name('wsPaths')} only applies in front of a site: set ${name('upstream')} too`);
  if (Boolean(config.tlsCert) !== Boolean(config.tlsKey)) throw new ConfigError(`${name('tlsCert')} and ${name('tlsKey')} go together: set both or neither`);
  if (config.redirectPort !== 0 && !config.tlsCert) throw new ConfigError(`${name('redirectPort')} redirects to HTTPS: it needs ${name('tlsCert')} and ${name('tlsKey')}`);
  if (config.redirectPort !== 0 && config.redirectPort === config.port) throw new ConfigError(`${name('redirectPort')} must differ from ${name('port')}`);
}

/** Raw string values by key, from flags over environment (which dotenv has filled) over defaults. */
export function collect(flags: Record<string, string>, env: NodeJS.ProcessEnv): Map<Key, { raw: string; from: string }> {
  const out = new Map<Key, { raw: string; from: string }>();
  for (const key of Object.keys(DEFAULTS) as Key[]) {
    const flag = flags[key];
    const fromEnv = env[envName(key)];
    if (flag !== undefined) out.set(key, { raw: flag, from: flagName(key) });
    else if (fromEnv !== undefined && (fromEnv !== '' || EMPTY_MEANS_NONE.has(key))) out.set(key, { raw: fromEnv, from: envName(key) });
    else out.set(key, { raw: String(DEFAULTS[key]), from: 'default' });
  }
  return out;
}

export function buildConfig(flags: Record<string, string>, env: NodeJS.ProcessEnv, cwd = process.cwd()): Config {
  const values = collect(flags, env);
  const get = <T>(key: Key, parse: (raw: string) => T): T => {
    const { raw, from } = values.get(key)!;
    try {
      return parse(raw);
    } catch (err) {
      // Secrets stay out of the message: it goes to terminals and journals.
      const where = from === 'default' ? `default ${key}` : SECRET_KEYS.has(key) ? from : `${from}=${JSON.stringify(raw)}`;
      throw new ConfigError(`invalid ${where} (${flagName(key)} / ${envName(key)}): ${(err as Error).message}`);
    }
  };
  const num = (key: Key): number => get(key, (raw) => parseNumber(key, raw));
  const config: Config = {
    host: get('host', (raw) => {
      if (!raw) throw new Error('expected an address such as 127.0.0.1, ::1 or 0.0.0.0');
      return raw;
    }),
    port: num('port'),
    fpm: get('fpm', (raw): Config['fpm'] => (raw === 'managed' ? { kind: 'managed' } : { kind: 'pools', pools: addressList(raw) })),
    fpmStatus: get('fpmStatus', (raw) => (raw ? addressList(raw) : [])),
    fpmMasterWorkers: num('fpmMasterWorkers'),
    sideChannel: get('sideChannel', (raw) => {
      if (raw !== 'auto' && raw !== 'off') throw new Error('expected auto or off');
      return raw;
    }),
    sideChannelDir: get('sideChannelDir', (raw) => {
      if (raw && !raw.startsWith('/')) throw new Error('expected an absolute directory');
      return raw;
    }),
    sideChannelGroup: get('sideChannelGroup', (raw) => {
      if (raw && !/^\d+$/.test(raw) && !UNIX_NAME.test(raw)) throw new Error('expected a group name or gid');
      return raw;
    }),
    fpmUser: get('fpmUser', (raw) => {
      if (raw && !UNIX_NAME.test(raw)) throw new Error('expected a user name');
      return raw;
    }),
    fpmInherit: get('fpmInherit', (raw) => (raw ? path.resolve(cwd, raw) : '')),
    root: get('root', (raw) => path.resolve(cwd, raw || '.')),
    index: get('index', (raw) => {
      if (raw && (!raw.endsWith('.php') || raw.split('/').includes('..'))) throw new Error('expected a .php path inside the root, or empty');
      return raw;
    }),
    routes: get('routes', parseRoutes),
    pages: get('pages', parseBoolean),
    upstream: get('upstream', parseUpstream),
    upstreamTimeout: num('upstreamTimeout'),
    wsPaths: get('wsPaths', parsePathPrefixes),
    tlsCert: get('tlsCert', (raw) => (raw ? path.resolve(cwd, raw) : '')),
    tlsKey: get('tlsKey', (raw) => (raw ? path.resolve(cwd, raw) : '')),
    redirectPort: num('redirectPort'),
    maxMessage: num('maxMessage'),
    handshakeTimeout: num('handshakeTimeout'),
    pingInterval: num('pingInterval'),
    closeGrace: num('closeGrace'),
    highWater: num('highWater'),
    stallTimeout: num('stallTimeout'),
    origins: get('allowOrigins', (raw) => {
      const policy = parseOriginList(raw);
      for (const o of policy.allow) if (!/^https?:\/\/[^/\s]+$/.test(o)) throw new Error(`${o}: expected origins like https://example.com, or *`);
      return policy;
    }),
    trustProxy: get('trustProxy', parseTrustList),
    control: get('control', (raw) => {
      if (!raw) return null;
      const a = address(raw, true);
      if (a.kind === 'tcp' && !isLoopback(a.host)) throw new Error('the control API must stay off public addresses: use a loopback address (127.0.0.1, ::1) or a unix socket');
      return a;
    }),
    controlToken: get('controlToken', parseToken),
    doctorToken: get('doctorToken', parseToken),
    pusherApps: get('pusherApps', parsePusherApps),
    maxChannels: num('maxChannels'),
    historySize: num('historySize'),
    historyTtl: num('historyTtl'),
    historyChannels: num('historyChannels'),
    redis: get('redis', (raw) => {
      if (raw && !/^rediss?:\/\/[^\s]+$/.test(raw)) throw new Error('expected redis://HOST:PORT[/DB] or rediss://…');
      return raw;
    }),
    maxConnections: num('maxConnections'),
    maxPerIp: num('maxPerIp'),
    maxEventConnections: num('maxEventConnections'),
    eventConcurrency: num('eventConcurrency'),
    eventTimeout: num('eventTimeout'),
    eventQueue: num('eventQueue'),
    maxMeta: num('maxMeta'),
    messageRate: num('messageRate'),
    requestTimeout: num('requestTimeout'),
    drainTimeout: num('drainTimeout'),
    maxRejectBody: num('maxRejectBody'),
    maxHeaderBlock: num('maxHeaderBlock'),
    logLevel: get('logLevel', (raw) => {
      if (!LOG_LEVELS.includes(raw)) throw new Error(`expected one of ${LOG_LEVELS.join(', ')}`);
      return raw;
    }),
  };
  checkCombinations(config);
  return Object.freeze(config);
}
