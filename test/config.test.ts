/**
 * Configuration: buildConfig(flags, env, cwd) from src/config.ts, its units
 * and bounds (src/defaults.ts), precedence flag > WSFPM_* env > default, the
 * ConfigError messages, and the CLI's parseArgs (src/cli.ts).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { parseArgs } from '../src/cli.ts';
import { buildConfig, collect, envName, flagName, type Config } from '../src/config.ts';
import { isTrusted, parseTrustList } from '../src/server/forwarded.ts';
import { BOUNDS, DEFAULTS } from '../src/defaults.ts';
import { ConfigError } from '../src/errors.ts';

const CWD = '/srv/site';
const build = (flags: Record<string, string> = {}, env: NodeJS.ProcessEnv = {}): Config => buildConfig(flags, env, CWD);

/** Asserts `fn` throws a ConfigError (exit code 2) whose message matches every pattern. */
function assertConfigError(fn: () => unknown, ...patterns: Array<RegExp | string>): ConfigError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  assert.equal(caught.exitCode, 2);
  assert.equal(caught.name, 'ConfigError');
  for (const p of patterns) {
    if (typeof p === 'string') assert.ok(caught.message.includes(p), `${JSON.stringify(caught.message)} should contain ${JSON.stringify(p)}`);
    else assert.match(caught.message, p);
  }
  return caught;
}

const KiB = 1024;
const MiB = 1024 * KiB;

/** The accepted ranges, written out from the project's documented limits. */
const EXPECTED_BOUNDS: Record<string, [number, number]> = {
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
};

describe('names', () => {
  test('flagName and envName', () => {
    assert.equal(flagName('port'), '--port');
    assert.equal(envName('port'), 'WSFPM_PORT');
    assert.equal(flagName('maxMessage'), '--max-message');
    assert.equal(envName('maxMessage'), 'WSFPM_MAX_MESSAGE');
    assert.equal(flagName('allowOrigins'), '--allow-origins');
    assert.equal(envName('allowOrigins'), 'WSFPM_ALLOW_ORIGINS');
    assert.equal(envName('handshakeTimeout'), 'WSFPM_HANDSHAKE_TIMEOUT');
    assert.equal(envName('logLevel'), 'WSFPM_LOG_LEVEL');
  });
});

describe('defaults', () => {
  test('buildConfig with no flags and no environment', () => {
    const c = build();
    assert.deepEqual(c, {
      host: '127.0.0.1',
      port: 8740,
      fpm: { kind: 'pools', pools: [{ kind: 'unix', path: '/run/php/php-fpm.sock' }] },
      fpmStatus: [],
      fpmMasterWorkers: 1000,
      fpmUser: '',
      fpmInherit: '',
      root: CWD,
      index: 'index.php',
      routes: new Map(),
      pages: false,
      upstream: '',
      upstreamTimeout: 60_000,
      wsPaths: [],
      tlsCert: '',
      tlsKey: '',
      redirectPort: 0,
      maxMessage: 1 * MiB,
      handshakeTimeout: 5000,
      pingInterval: 25_000,
      closeGrace: 5000,
      highWater: 1 * MiB,
      origins: { any: false, allow: new Set() },
      trustProxy: parseTrustList('127.0.0.1,::1'),
      control: { kind: 'tcp', host: '127.0.0.1', port: 8741 },
      controlToken: '',
      doctorToken: '',
      pusherApps: [],
      maxChannels: 100,
      historySize: 100,
      historyTtl: 300_000,
      historyChannels: 10_000,
      redis: '',
      maxPerIp: 100,
      maxEventConnections: 10_000,
      eventConcurrency: 8,
      eventTimeout: 30_000,
      eventQueue: 32,
      maxMeta: 4 * KiB,
      messageRate: 1000,
      requestTimeout: 10_000,
      drainTimeout: 10_000,
      stallTimeout: 60_000,
      sideChannel: 'auto',
      sideChannelDir: '',
      sideChannelGroup: '',
      maxConnections: 1000,
      maxRejectBody: 64 * KiB,
      maxHeaderBlock: 32 * KiB,
      logLevel: 'info',
    });
    assert.ok(Object.isFrozen(c));
  });

  test('root defaults to the working directory', () => {
    assert.equal(buildConfig({}, {}).root, process.cwd());
  });

  test('every default is within its bounds, and the bounds are the documented ones', () => {
    assert.deepEqual({ ...BOUNDS }, EXPECTED_BOUNDS);
    for (const [key, [min, max]] of Object.entries(EXPECTED_BOUNDS)) {
      const value = DEFAULTS[key as keyof typeof DEFAULTS];
      assert.equal(typeof value, 'number', key);
      assert.ok((value as number) >= min && (value as number) <= max, key);
    }
  });
});

/** Settings a numeric one needs beside it to be accepted at all. */
const COMPANIONS: Record<string, Record<string, string>> = { redirectPort: { tlsCert: 'cert.pem', tlsKey: 'key.pem' } };

describe('numeric bounds', () => {
  for (const [key, [min, max]] of Object.entries(EXPECTED_BOUNDS)) {
    const flag = flagName(key);
    const env = envName(key);
    const companions = COMPANIONS[key] ?? {};
    test(`${key}: ${min} and ${max} accepted, ${min - 1} and ${max + 1} refused (flag and env)`, () => {
      assert.equal(build({ ...companions, [key]: String(min) })[key as keyof Config], min);
      assert.equal(build({ ...companions, [key]: String(max) })[key as keyof Config], max);
      assert.equal(build(companions, { [env]: String(min) })[key as keyof Config], min);
      assert.equal(build(companions, { [env]: String(max) })[key as keyof Config], max);

      const range = `${min} to ${max}`;
      for (const bad of [String(min - 1), String(max + 1)]) {
        // From a flag: the message names the flag with its value, the variable, and the range.
        assertConfigError(() => build({ ...companions, [key]: bad }), `${flag}=${JSON.stringify(bad)}`, `(${flag} / ${env})`, range);
        // From the environment: names the variable with its value, and the flag.
        assertConfigError(() => build(companions, { [env]: bad }), `${env}=${JSON.stringify(bad)}`, `(${flag} / ${env})`, range);
      }
      assertConfigError(() => build({ ...companions, [key]: String(max + 1) }), `${max + 1} is out of range: ${range}`);
      if (min > 0) assertConfigError(() => build({ ...companions, [key]: String(min - 1) }), `${min - 1} is out of range: ${range}`);
      else assertConfigError(() => build({ ...companions, [key]: '-1' }), `expected a number`);
    });
  }

  test('non-numbers are refused with what is accepted', () => {
    // '5constructor' once matched Object.prototype.constructor as a unit; '80.6' once rounded to a port.
    for (const bad of ['', 'abc', '0x10', '1e3', '12abc', '--1', '1,000', '+5', 'NaN', 'Infinity', '5constructor', '5toString', '80.6']) {
      assertConfigError(() => build({ port: bad }), '--port', 'WSFPM_PORT', 'expected a number from 0 to 65535');
    }
  });

  test('surrounding whitespace is ignored', () => {
    assert.equal(build({ port: ' 8080 ' }).port, 8080);
    assert.equal(build({}, { WSFPM_MAX_CONNECTIONS: '\t50\n' }).maxConnections, 50);
  });
});

describe('units', () => {
  test('sizes: no suffix or b is bytes; k, m, g (and kb, kib, …) are powers of 1024, any case', () => {
    const cases: Array<[string, number]> = [
      ['1', 1],
      ['10b', 10],
      ['1k', 1024],
      ['1K', 1024],
      ['2kb', 2048],
      ['3KiB', 3072],
      ['1.5k', 1536],
      ['512 k', 512 * 1024],
      ['1m', MiB],
      ['2MB', 2 * MiB],
      ['4mib', 4 * MiB],
      ['64m', 64 * MiB],
    ];
    for (const [raw, bytes] of cases) assert.equal(build({ maxMessage: raw }).maxMessage, bytes, raw);
    assert.equal(build({ maxRejectBody: '0k' }).maxRejectBody, 0);
    assert.equal(build({}, { WSFPM_HIGH_WATER: '16k' }).highWater, 16 * KiB);
    assert.equal(build({ maxHeaderBlock: '1m' }).maxHeaderBlock, MiB);
  });

  test('g suffix: 1g is over every size bound, so it is refused with the range', () => {
    assertConfigError(() => build({ maxMessage: '1g' }), `${1 << 30} is out of range: 1 to ${64 * MiB} bytes (suffixes k, m, g)`);
    assertConfigError(() => build({ highWater: '1GiB' }), 'out of range');
    assert.equal(build({ maxMessage: '0.0625g' }).maxMessage, 64 * MiB);
  });

  test('sizes just past a bound via a suffix', () => {
    assert.equal(build({ maxMessage: '65536k' }).maxMessage, 64 * MiB);
    assertConfigError(() => build({ maxMessage: '65537k' }), 'out of range');
    assertConfigError(() => build({ highWater: '15k' }), `${15 * KiB} is out of range: ${16 * KiB} to ${64 * MiB}`);
  });

  test('times: no suffix or ms is milliseconds; s, m, min, h', () => {
    const cases: Array<[string, number]> = [
      ['250', 250],
      ['250ms', 250],
      ['5s', 5000],
      ['1.5s', 1500],
      ['2m', 120_000],
      ['1min', 60_000],
      ['1h', 3_600_000],
      ['10 S', 10_000],
    ];
    for (const [raw, ms] of cases) assert.equal(build({ pingInterval: raw }).pingInterval, ms, raw);
    assert.equal(build({ handshakeTimeout: '0.1s' }).handshakeTimeout, 100);
    assertConfigError(() => build({ handshakeTimeout: '99ms' }), '99 is out of range: 100 to 600000 ms (suffixes ms, s, m, h)');
    assert.equal(build({ closeGrace: '10m' }).closeGrace, 600_000);
    assertConfigError(() => build({ closeGrace: '11m' }), '660000 is out of range');
    assertConfigError(() => build({ pingInterval: '2h' }), '7200000 is out of range: 0 to 3600000');
  });

  test('"m" means minutes for times and MiB for sizes', () => {
    const c = build({ closeGrace: '1m', maxMessage: '1m' });
    assert.equal(c.closeGrace, 60_000);
    assert.equal(c.maxMessage, MiB);
  });

  test('a unit of the wrong kind, or any unit on a plain number, is refused', () => {
    assertConfigError(() => build({ maxMessage: '1s' }), '--max-message', 'WSFPM_MAX_MESSAGE', 'expected a number bytes (suffixes k, m, g) from 1 to');
    assertConfigError(() => build({ maxMessage: '1ms' }), 'suffixes k, m, g');
    assertConfigError(() => build({ closeGrace: '1k' }), '--close-grace', 'WSFPM_CLOSE_GRACE', 'ms (suffixes ms, s, m, h)');
    assertConfigError(() => build({ closeGrace: '1d' }), 'expected a number');
    assertConfigError(() => build({ port: '80k' }), '--port', 'expected a number from 0 to 65535');
    assertConfigError(() => build({ maxConnections: '1k' }), '--max-connections', 'WSFPM_MAX_CONNECTIONS', 'expected a number from 1 to 1000000');
  });
});

describe('precedence: flag > environment > default', () => {
  test('a flag wins over the environment, which wins over the default', () => {
    assert.equal(build({ port: '1111' }, { WSFPM_PORT: '2222' }).port, 1111);
    assert.equal(build({}, { WSFPM_PORT: '2222' }).port, 2222);
    assert.equal(build({}, {}).port, 8740);
    assert.equal(build({ logLevel: 'warn' }, { WSFPM_LOG_LEVEL: 'debug' }).logLevel, 'warn');
    assert.equal(build({}, { WSFPM_LOG_LEVEL: 'debug' }).logLevel, 'debug');
  });

  test('a bad environment value is ignored when a flag overrides it', () => {
    assert.equal(build({ port: '1111' }, { WSFPM_PORT: 'not a port' }).port, 1111);
  });

  test('an empty environment variable counts as unset; an empty flag does not', () => {
    assert.equal(build({}, { WSFPM_PORT: '' }).port, 8740);
    assert.equal(build({}, { WSFPM_HOST: '' }).host, '127.0.0.1');
    assertConfigError(() => build({ port: '' }), '--port=""');
    assertConfigError(() => build({ host: '' }), '--host=""', 'WSFPM_HOST', 'expected an address');
    assert.equal(build({ index: '' }).index, '', 'an empty --index disables the front controller');
  });

  test('only exact WSFPM_* names are read', () => {
    const c = build({}, { wsfpm_port: '1', PORT: '2', WSFPM_PORT_: '3', WSFPM_MAXMESSAGE: '4' });
    assert.equal(c.port, 8740);
    assert.equal(c.maxMessage, MiB);
  });

  test('collect reports where each value came from', () => {
    const values = collect({ port: '1' }, { WSFPM_HOST: '::1', WSFPM_PORT: '2' });
    assert.deepEqual(values.get('port'), { raw: '1', from: '--port' });
    assert.deepEqual(values.get('host'), { raw: '::1', from: 'WSFPM_HOST' });
    assert.deepEqual(values.get('maxMessage'), { raw: String(MiB), from: 'default' });
    assert.equal(values.size, Object.keys(DEFAULTS).length);
  });

  test('every setting can be given by flag and by environment', () => {
    const flags = { host: '0.0.0.0', port: '9000', fpm: 'tcp:127.0.0.1:9001', root: '/var/www', index: 'app.php', routes: '/ws=ws.php', pages: 'no', maxMessage: '2m', handshakeTimeout: '3s', pingInterval: '0', closeGrace: '1s', highWater: '32k', allowOrigins: '*', maxConnections: '10', maxRejectBody: '0', maxHeaderBlock: '4k', logLevel: 'silent', trustProxy: '10.0.0.0/8', fpmStatus: 'unix:/run/status.sock', fpmMasterWorkers: '250', fpmUser: 'www-data', fpmInherit: '/etc/php/www.conf', sideChannel: 'off', sideChannelDir: '/run/wsfpm', sideChannelGroup: 'www-data', control: 'unix:/run/wsfpm.sock', controlToken: '0123456789abcdef', doctorToken: 'fedcba9876543210', maxChannels: '7', pusherApps: '1:key1:0123456789abcdef:client-events', redis: 'redis://127.0.0.1:6379/2', maxPerIp: '5', messageRate: '0', requestTimeout: '2s', drainTimeout: '1m', stallTimeout: '5s', upstream: 'http://127.0.0.1:8080', upstreamTimeout: '30s', wsPaths: '/ws/, /live/', tlsCert: 'tls/cert.pem', tlsKey: '/etc/wsfpm/key.pem', redirectPort: '8080', maxEventConnections: '50000', eventConcurrency: '3', eventTimeout: '2s', eventQueue: '9', maxMeta: '1k', historySize: '50', historyTtl: '2m', historyChannels: '500' };
    const env = Object.fromEntries(Object.entries(flags).map(([k, v]) => [envName(k), v]));
    const expected: Config = {
      host: '0.0.0.0',
      port: 9000,
      fpm: { kind: 'pools', pools: [{ kind: 'tcp', host: '127.0.0.1', port: 9001 }] },
      fpmStatus: [{ kind: 'unix', path: '/run/status.sock' }],
      fpmMasterWorkers: 250,
      fpmUser: 'www-data',
      fpmInherit: '/etc/php/www.conf',
      sideChannel: 'off',
      sideChannelDir: '/run/wsfpm',
      sideChannelGroup: 'www-data',
      root: '/var/www',
      index: 'app.php',
      routes: new Map([['/ws', 'ws.php']]),
      pages: false,
      upstream: 'http://127.0.0.1:8080',
      upstreamTimeout: 30_000,
      wsPaths: ['/ws/', '/live/'],
      tlsCert: '/srv/site/tls/cert.pem',
      tlsKey: '/etc/wsfpm/key.pem',
      redirectPort: 8080,
      maxMessage: 2 * MiB,
      handshakeTimeout: 3000,
      pingInterval: 0,
      closeGrace: 1000,
      highWater: 32 * KiB,
      origins: { any: true, allow: new Set() },
      trustProxy: parseTrustList('10.0.0.0/8'),
      control: { kind: 'unix', path: '/run/wsfpm.sock' },
      controlToken: '0123456789abcdef',
      doctorToken: 'fedcba9876543210',
      pusherApps: [{ id: '1', key: 'key1', secret: '0123456789abcdef', clientEventRate: 10, webhook: '' }],
      maxChannels: 7,
      historySize: 50,
      historyTtl: 120_000,
      historyChannels: 500,
      redis: 'redis://127.0.0.1:6379/2',
      maxPerIp: 5,
      maxEventConnections: 50_000,
      eventConcurrency: 3,
      eventTimeout: 2000,
      eventQueue: 9,
      maxMeta: KiB,
      messageRate: 0,
      requestTimeout: 2000,
      drainTimeout: 60_000,
      stallTimeout: 5000,
      maxConnections: 10,
      maxRejectBody: 0,
      maxHeaderBlock: 4 * KiB,
      logLevel: 'silent',
    };
    assert.deepEqual(Object.keys(flags).sort(), Object.keys(DEFAULTS).sort());
    assert.deepEqual(build(flags, {}), expected);
    assert.deepEqual(build({}, env), expected);
    assert.ok(isTrusted(build(flags, {}).trustProxy, '10.1.2.3'));
    assert.ok(!isTrusted(build(flags, {}).trustProxy, '11.1.2.3'));
  });

  test('WSFPM_INDEX="" disables the front controller, as --index "" does', () => {
    assert.equal(build({}, { WSFPM_INDEX: '' }).index, '');
  });
});

describe('other settings', () => {
  test('fpm addresses', () => {
    assert.deepEqual(build({ fpm: 'unix:/tmp/fpm.sock' }).fpm, { kind: 'pools', pools: [{ kind: 'unix', path: '/tmp/fpm.sock' }] });
    assert.deepEqual(build({ fpm: '/tmp/fpm.sock' }).fpm, { kind: 'pools', pools: [{ kind: 'unix', path: '/tmp/fpm.sock' }] });
    assert.deepEqual(build({ fpm: 'tcp:127.0.0.1:9000' }).fpm, { kind: 'pools', pools: [{ kind: 'tcp', host: '127.0.0.1', port: 9000 }] });
    assert.deepEqual(build({ fpm: 'localhost:9000' }).fpm, { kind: 'pools', pools: [{ kind: 'tcp', host: 'localhost', port: 9000 }] });
    assert.deepEqual(build({ fpm: 'tcp:[::1]:9000' }).fpm, { kind: 'pools', pools: [{ kind: 'tcp', host: '::1', port: 9000 }] });
    assertConfigError(() => build({ fpm: 'unix:run/fpm.sock' }), '--fpm', 'WSFPM_FPM', 'must be absolute');
    assert.deepEqual(build({ fpm: 'unix:/run/a.sock, tcp:127.0.0.1:9001' }).fpm, { kind: 'pools', pools: [{ kind: 'unix', path: '/run/a.sock' }, { kind: 'tcp', host: '127.0.0.1', port: 9001 }] });
    assertConfigError(() => build({ fpm: 'unix:/run/a.sock,,unix:/run/b.sock' }), '--fpm', 'WSFPM_FPM', 'none empty');
    assert.deepEqual(build({ fpm: 'unix:/run/a.sock,unix:/run/b.sock', fpmStatus: 'unix:/run/a-st.sock,unix:/run/b-st.sock' }).fpmStatus, [{ kind: 'unix', path: '/run/a-st.sock' }, { kind: 'unix', path: '/run/b-st.sock' }]);
    assert.throws(() => build({ fpm: 'unix:/run/a.sock,unix:/run/b.sock', fpmStatus: 'unix:/run/a-st.sock' }), /names 1 status address\(es\) for 2 pool\(s\)/);
    assert.throws(() => build({ fpm: 'managed', fpmStatus: 'unix:/run/a-st.sock' }), /--fpm-status \(WSFPM_FPM_STATUS\) is for the site's own pools/);
    assertConfigError(() => build({ fpm: 'tcp:127.0.0.1:0' }), 'port 0 is out of range 1-65535');
    assertConfigError(() => build({ fpm: 'tcp:127.0.0.1:65536' }), 'port 65536 is out of range');
    assertConfigError(() => build({}, { WSFPM_FPM: 'php-fpm' }), 'WSFPM_FPM="php-fpm"', '--fpm', 'expected unix:/path/to/php-fpm.sock or tcp:HOST:PORT');
  });

  test('tokens: empty (none) or at least 16 characters', () => {
    assert.equal(build({ doctorToken: 'x'.repeat(16) }).doctorToken, 'x'.repeat(16));
    assert.equal(build({}, { WSFPM_DOCTOR_TOKEN: '' }).doctorToken, '');
    assertConfigError(() => build({ doctorToken: 'short' }), '--doctor-token', 'WSFPM_DOCTOR_TOKEN', 'at least 16 characters');
    assertConfigError(() => build({}, { WSFPM_CONTROL_TOKEN: 'short' }), '--control-token', 'WSFPM_CONTROL_TOKEN', 'at least 16 characters');
  });

  test('root is resolved against the working directory', () => {
    assert.equal(build({ root: 'public' }).root, path.join(CWD, 'public'));
    assert.equal(build({ root: '../other' }).root, '/srv/other');
    assert.equal(build({ root: '/var/www' }).root, '/var/www');
    assert.equal(build({}, { WSFPM_ROOT: 'web' }).root, path.join(CWD, 'web'));
  });

  test('index: a .php path inside the root, or empty', () => {
    assert.equal(build({ index: 'app/front.php' }).index, 'app/front.php');
    assert.equal(build({ index: '' }).index, '');
    assertConfigError(() => build({ index: 'index.html' }), '--index', 'WSFPM_INDEX', 'expected a .php path inside the root');
    assertConfigError(() => build({ index: '../index.php' }), 'inside the root');
    assertConfigError(() => build({}, { WSFPM_INDEX: 'a/../../b.php' }), 'WSFPM_INDEX=');
  });

  test('routes', () => {
    assert.deepEqual(
      build({ routes: '/chat=chat.php, /a/b=sub/x.php,,' }).routes,
      new Map([
        ['/chat', 'chat.php'],
        ['/a/b', 'sub/x.php'],
      ]),
    );
    assert.deepEqual(build({ routes: '' }).routes, new Map());
    for (const bad of ['chat=chat.php', '/chat=chat.txt', '/chat=../chat.php', '/chat=a/../../x.php', '/chat', '=/x.php', '/x=']) {
      assertConfigError(() => build({ routes: bad }), '--routes', 'WSFPM_ROUTES', 'expected /url/path=script.php');
    }
  });

  test('allowOrigins: *, or http(s) origins (normalized)', () => {
    assert.deepEqual(build({ allowOrigins: '*' }).origins, { any: true, allow: new Set() });
    assert.deepEqual(build({ allowOrigins: 'https://App.Example.com/, http://localhost:8080' }).origins, {
      any: false,
      allow: new Set(['https://app.example.com', 'http://localhost:8080']),
    });
    for (const bad of ['example.com', 'https://example.com/path', 'ftp://example.com', 'https://']) {
      assertConfigError(() => build({ allowOrigins: bad }), '--allow-origins', 'WSFPM_ALLOW_ORIGINS', 'expected origins like https://example.com');
    }
  });

  test('logLevel', () => {
    for (const level of ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']) assert.equal(build({ logLevel: level }).logLevel, level);
    assertConfigError(() => build({ logLevel: 'verbose' }), '--log-level', 'WSFPM_LOG_LEVEL', 'expected one of fatal, error, warn, info, debug, trace, silent');
    assertConfigError(() => build({ logLevel: 'DEBUG' }), 'expected one of');
  });
});

describe('in front of a site, TLS', () => {
  test('upstream: an http:// origin, normalized; "" is not in front', () => {
    assert.equal(build({ upstream: 'http://127.0.0.1:8080' }).upstream, 'http://127.0.0.1:8080');
    assert.equal(build({ upstream: 'http://LOCALHOST:8080/' }).upstream, 'http://localhost:8080');
    assert.equal(build({ upstream: 'http://[::1]:80' }).upstream, 'http://[::1]');
    assert.equal(build({}, { WSFPM_UPSTREAM: '' }).upstream, '');
    assertConfigError(() => build({ upstream: '127.0.0.1:8080' }), '--upstream', 'WSFPM_UPSTREAM', 'expected a URL such as http://127.0.0.1:8080');
    assertConfigError(() => build({ upstream: 'localhost:8080' }), 'expected an http:// URL');
    assertConfigError(() => build({ upstream: 'not a url' }), 'expected a URL such as http://127.0.0.1:8080');
    assertConfigError(() => build({ upstream: 'https://127.0.0.1:8443' }), 'expected an http:// URL');
    for (const bad of ['http://127.0.0.1:8080/site', 'http://u:p@127.0.0.1:8080', 'http://127.0.0.1:8080/?a=1']) {
      assertConfigError(() => build({ upstream: bad }), `--upstream=${JSON.stringify(bad)}`, 'expected scheme, host and port only');
    }
  });

  test('upstream and pages exclude each other', () => {
    assertConfigError(() => build({ upstream: 'http://127.0.0.1:8080', pages: 'true' }), '--upstream (WSFPM_UPSTREAM) and --pages (WSFPM_PAGES) exclude each other');
    assertConfigError(() => build({}, { WSFPM_UPSTREAM: 'http://127.0.0.1:8080', WSFPM_PAGES: 'yes' }), 'exclude each other');
  });

  test('wsPaths: path prefixes, only in front', () => {
    assert.deepEqual(build({ upstream: 'http://127.0.0.1:8080', wsPaths: '/ws/,, /live ' }).wsPaths, ['/ws/', '/live']);
    assertConfigError(() => build({ upstream: 'http://127.0.0.1:8080', wsPaths: 'ws/' }), '--ws-paths', 'WSFPM_WS_PATHS', 'expected URL path prefixes');
    assertConfigError(() => build({ upstream: 'http://127.0.0.1:8080', wsPaths: '/a b/' }), 'expected URL path prefixes');
    assertConfigError(() => build({ wsPaths: '/ws/' }), '--ws-paths (WSFPM_WS_PATHS) only applies in front of a site', '--upstream (WSFPM_UPSTREAM)');
  });

  test('tlsCert and tlsKey: paths resolved against the working directory, both or neither', () => {
    const c = build({ tlsCert: 'cert.pem', tlsKey: '/etc/key.pem' });
    assert.equal(c.tlsCert, path.join(CWD, 'cert.pem'));
    assert.equal(c.tlsKey, '/etc/key.pem');
    assertConfigError(() => build({ tlsCert: 'cert.pem' }), '--tls-cert (WSFPM_TLS_CERT) and --tls-key (WSFPM_TLS_KEY) go together');
    assertConfigError(() => build({}, { WSFPM_TLS_KEY: 'key.pem' }), 'go together');
  });

  test('redirectPort: needs TLS, and a port of its own', () => {
    const tls = { tlsCert: 'c.pem', tlsKey: 'k.pem' };
    assert.equal(build({ ...tls, port: '443', redirectPort: '80' }).redirectPort, 80);
    assertConfigError(() => build({ redirectPort: '80' }), '--redirect-port (WSFPM_REDIRECT_PORT) redirects to HTTPS: it needs --tls-cert');
    assertConfigError(() => build({ ...tls, port: '8443', redirectPort: '8443' }), '--redirect-port (WSFPM_REDIRECT_PORT) must differ from --port (WSFPM_PORT)');
  });

  test('upstreamTimeout takes time units', () => {
    assert.equal(build({ upstreamTimeout: '2m' }).upstreamTimeout, 120_000);
    assertConfigError(() => build({ upstreamTimeout: '50ms' }), '--upstream-timeout', 'WSFPM_UPSTREAM_TIMEOUT', '50 is out of range: 100 to 3600000 ms');
  });
});

describe('parseArgs', () => {
  test('no arguments: serve with no flags', () => {
    assert.deepEqual(parseArgs([]), { command: 'serve', flags: {}, envFile: undefined, demoName: 'echo' });
  });

  test('flags as "--name value" and "--name=value", mapped to setting keys', () => {
    assert.deepEqual(parseArgs(['--port', '9000', '--max-message=2m', '--allow-origins', '*', '--index=']), {
      command: 'serve',
      flags: { port: '9000', maxMessage: '2m', allowOrigins: '*', index: '' },
      envFile: undefined,
      demoName: 'echo',
    });
  });

  test('a value may contain "="', () => {
    assert.deepEqual(parseArgs(['--routes=/a=a.php,/b=b.php']).flags, { routes: '/a=a.php,/b=b.php' });
  });

  test('commands: serve and demo, only in first position', () => {
    assert.equal(parseArgs(['serve', '--port', '1']).command, 'serve');
    assert.deepEqual(parseArgs(['demo', '--port', '1']), { command: 'demo', flags: { port: '1' }, envFile: undefined, demoName: 'echo' });
    assert.deepEqual(parseArgs(['demo', 'chat', '--port', '1']), { command: 'demo', flags: { port: '1' }, envFile: undefined, demoName: 'chat' });
    assert.throws(() => parseArgs(['start']), (err: unknown) => err instanceof ConfigError && /unknown command "start"/.test(err.message));
  });

  test('--help, -h, --version, -v', () => {
    assert.equal(parseArgs(['--help']).command, 'help');
    assert.equal(parseArgs(['-h']).command, 'help');
    assert.equal(parseArgs(['--version']).command, 'version');
    assert.equal(parseArgs(['-v']).command, 'version');
    assert.equal(parseArgs(['serve', '--port', '1', '--help']).command, 'help');
  });

  test('--env-file', () => {
    assert.deepEqual(parseArgs(['--env-file', '/etc/wsfpm.env', '--port=1']), { command: 'serve', flags: { port: '1' }, envFile: '/etc/wsfpm.env', demoName: 'echo' });
    assert.equal(parseArgs(['--env-file=x.env']).envFile, 'x.env');
  });

  test('an unknown option is a ConfigError naming it', () => {
    for (const argv of [['--prot', '1'], ['--maxMessage', '1'], ['--max_message=1'], ['-p', '1'], ['--PORT', '1']]) {
      const err = assertConfigError(() => parseArgs(argv), 'unknown option', JSON.stringify(argv[0]!.split('=')[0]));
      assert.match(err.message, /try wsfpm --help/);
    }
  });

  test('a flag without a value is a ConfigError', () => {
    assertConfigError(() => parseArgs(['--port']), '--port needs a value');
    assertConfigError(() => parseArgs(['--env-file']), '--env-file needs a value');
  });

  test('parseArgs output feeds buildConfig', () => {
    const { flags } = parseArgs(['--port', '0', '--close-grace', '2s', '--high-water=64k']);
    const c = buildConfig(flags, { WSFPM_CLOSE_GRACE: '9s', WSFPM_MAX_CONNECTIONS: '7' }, CWD);
    assert.equal(c.port, 0);
    assert.equal(c.closeGrace, 2000);
    assert.equal(c.highWater, 64 * KiB);
    assert.equal(c.maxConnections, 7);
  });
});

describe('docs/configuration.md', () => {
  test('is the one the code renders (run npm run docs:config after changing a setting)', async () => {
    const { readFileSync } = await import('node:fs');
    const { configurationMarkdown } = await import('../src/help.ts');
    assert.equal(readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8'), configurationMarkdown());
  });
});
