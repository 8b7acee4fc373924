/**
 * Events mode against a real php-fpm: the daemon holds the websocket and
 * runs the script once per event (docs/protocol.md, "Events mode"). The
 * fixture ev-raw.php speaks the protocol by hand, so these tests hold the
 * daemon to the spec; the library's Event class has its own tests.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fcgiFetch } from '../src/fastcgi/fetch.ts';
import { FcgiRequest } from '../src/fastcgi/request.ts';
import { type Member } from '../src/hub/hub.ts';
import { RedisServer } from './helpers/redis.ts';
import { Client, FIXTURES, open, refusal, sleep, startDaemon, startHarness, startPool, withTimeout, type Harness } from './helpers/harness.ts';

/** Watches a channel from inside the daemon's own hub: what the close events publish. */
function watch(h: { daemon: { hub: { add(m: Member): void; subscribe(id: string, ch: string, fwd: boolean): boolean } } }, channel: string): string[] {
  const seen: string[] = [];
  const id = 'f'.repeat(32);
  h.daemon.hub.add({ id, path: '/spy', ip: '127.0.0.1', since: Date.now(), deliverChannel: (_c, data) => (seen.push(data.toString()), true), deliverDirect: () => true, close: () => {} });
  h.daemon.hub.subscribe(id, channel, false);
  return seen;
}

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('events mode', () => {
  let h: Harness;
  let closed: string[];
  before(async () => {
    // Two workers only: more open connections than workers proves none is held between events.
    h = await startHarness({ maxPerIp: '5000', eventConcurrency: '2' }, 2);
    closed = watch(h, 'ev-closed');
  });
  after(async () => h.close());

  it('holds more connections than the pool has workers, each echoing through its own events', async () => {
    const clients = await Promise.all(Array.from({ length: 6 }, () => open(h.url('/ev-raw.php'))));
    for (const c of clients) assert.equal(await c.text(), 'welcome stranger');
    for (const [i, c] of clients.entries()) c.ws.send(`hello ${i}`);
    for (const [i, c] of clients.entries()) assert.equal(await c.text(), `#1/1 hello ${i}`);
    assert.equal(h.daemon.connections(), 6);
    for (const c of clients) c.ws.close();
    await Promise.all(clients.map((c) => c.closed));
    await until('the close events', () => h.daemon.connections() === 0);
  });

  it('keeps strict order over 1,000 messages, in batches, with the meta counting across events', async () => {
    const c = await open(h.url('/ev-raw.php?batch=8'));
    await c.text();
    for (let i = 0; i < 1000; i++) c.ws.send(`m${i}`);
    let batched = 0;
    for (let i = 0; i < 1000; i++) {
      const m = /^#(\d+)\/(\d+) m(\d+)$/.exec(await c.text());
      assert.ok(m, 'an echo');
      assert.equal(Number(m[1]), i + 1, 'the meta counter carried from event to event');
      assert.equal(Number(m[3]), i, 'in order');
      assert.ok(Number(m[2]) >= 1 && Number(m[2]) <= 8, 'at most batch messages per event');
      if (Number(m[2]) > 1) batched++;
    }
    assert.ok(batched > 0, 'messages that queued while an event ran travelled together');
    c.ws.close();
    await c.closed;
  });

  it('sends one close event with the client\'s code', async () => {
    const c = await open(h.url('/ev-raw.php'));
    await c.text();
    const id = String(h.daemon.hub.list().find((m) => m.path === '/ev-raw.php')?.id);
    c.ws.close(4321, 'leaving');
    await until('the close event', () => closed.includes(`${id} 4321`));
    await sleep(100);
    assert.equal(closed.filter((l) => l.startsWith(id)).length, 1, 'exactly one close event');
  });

  it('reads the session and the upgrade\'s own parameters in every event', async () => {
    const fpm = { kind: 'unix' as const, path: h.pool.socket };
    const first = await fcgiFetch(fpm, {
      REQUEST_METHOD: 'GET', SCRIPT_FILENAME: path.join(FIXTURES, 'session-page.php'), SCRIPT_NAME: '/session-page.php',
      REQUEST_URI: '/session-page.php?name=alice', QUERY_STRING: 'name=alice', SERVER_NAME: 'localhost', SERVER_PORT: '80', REMOTE_ADDR: '127.0.0.1',
    });
    const cookie = (first.head.headers.find(([n]) => n.toLowerCase() === 'set-cookie')?.[1] ?? '').split(';')[0]!;
    const c = await open(h.url('/ev-raw.php?x=1'), { headers: { Cookie: cookie } });
    assert.equal(await c.text(), 'welcome alice');
    c.ws.send('session');
    assert.equal(await c.text(), 'session alice 127.0.0.1 x=1');
    c.ws.close();
    await c.closed;
  });

  it('a PHP fatal in an event: none of its actions, close 1011, one log line, and the daemon serves on', async () => {
    const c = await open(h.url('/ev-raw.php'));
    await c.text();
    c.ws.send('fatal');
    const end = await c.closed;
    assert.equal(end.code, 1011);
    assert.equal(c.messages.length, 0, 'the frame written before the fatal error was not applied');
    assert.ok(h.logs.some((l) => l.msg === 'event failed; connection closed' && l.code === 'WSFPM_ERR_PHP_DIED'));
    const d = await open(h.url('/ev-raw.php'));
    await d.text();
    d.ws.send('still here');
    assert.equal(await d.text(), '#1/1 still here');
    d.ws.close();
    await d.closed;
  });

  it('garbage instead of frames closes with 1011 (WSFPM_ERR_PHP_FRAME)', async () => {
    const c = await open(h.url('/ev-raw.php'));
    await c.text();
    c.ws.send('garbage');
    assert.equal((await c.closed).code, 1011);
    assert.ok(h.logs.some((l) => l.code === 'WSFPM_ERR_PHP_FRAME'));
  });

  it('a meta over --max-meta and a TIMER frame are protocol errors (1011)', async () => {
    const a = await open(h.url('/ev-raw.php'));
    await a.text();
    a.ws.send('meta|4096');
    a.ws.send('x');
    assert.equal(await a.text(), '#1/1 x', 'a meta of exactly the limit is kept');
    a.ws.send('meta|4097');
    assert.equal((await a.closed).code, 1011);
    const b = await open(h.url('/ev-raw.php'));
    await b.text();
    b.ws.send('timer');
    assert.equal((await b.closed).code, 1011);
    assert.ok(h.logs.some((l) => typeof l.detail === 'string' && l.detail.includes('TIMER is a bound-mode frame')));
  });

  it('a script that closes: the client gets that code, and the close event reports it', async () => {
    const c = await open(h.url('/ev-raw.php'));
    await c.text();
    c.ws.send('session');
    await c.text();
    const id = String(h.daemon.hub.list().find((m) => m.path === '/ev-raw.php')?.id);
    c.ws.send('close|4100');
    const end = await c.closed;
    assert.equal(end.code, 4100);
    assert.equal(end.reason, 'bye');
    await until('the close event', () => closed.includes(`${id} 4100`));
  });

  it('/metrics counts events by type and outcome, and the events-mode connections open', async () => {
    const c = await open(h.url('/ev-raw.php'));
    await c.text();
    c.ws.send('counted');
    await c.text();
    const text = await h.daemon.metrics.registry.metrics();
    assert.match(text, /wsfpm_events_total\{type="message",outcome="applied"\} [1-9]/);
    assert.match(text, /wsfpm_events_total\{type="message",outcome="failed"\} [1-9]/, 'the fatal and garbage tests above failed events');
    assert.match(text, /wsfpm_event_connections_open 1\b/);
    assert.match(text, /wsfpm_event_seconds_count\{type="open"\} [1-9]/);
    c.ws.close();
    await c.closed;
  });

  it('PHP refusing the open is an HTTP answer, as in bound mode', async () => {
    const r = await refusal(h.url('/ev-raw.php?refuse=1'));
    assert.equal(r.status, 403);
    assert.equal(r.body, 'no');
  });

  it('channels: FORWARD subscriptions from the open, publishes from events, a bound connection on the same hub', async () => {
    const a = await open(h.url('/ev-raw.php?room=lobby'));
    await a.text();
    const b = await open(h.url('/ev-raw.php'));
    await b.text();
    b.ws.send('sub|lobby');
    b.ws.send('ping');
    assert.equal(await b.text(), '#1/1 ping');
    // A bound script (the library's channel API) publishes to both.
    const bound = await open(h.url('/lib-channels.php'));
    await bound.text();
    bound.ws.send('pub|lobby|from bound');
    assert.equal(await bound.text(), 'ok pub');
    assert.equal(await a.text(), 'from bound', 'forwarded straight to the client');
    assert.equal(await b.text(), 'chan lobby from bound', 'a subscription without FORWARD reaches the script as an event');
    // And an events-mode script publishes to the bound one.
    bound.ws.send('sub|lobby');
    assert.equal(await bound.text(), 'ok sub');
    a.ws.send('pub|lobby|from events');
    assert.deepEqual(JSON.parse(await bound.text()), { channel: 'lobby', data: 'from events', binary: false, length: 11 });
    for (const c of [a, b, bound]) c.ws.close();
    await Promise.all([a.closed, b.closed, bound.closed]);
  });
});

describe('events mode under faults', () => {
  it('no answer within --event-timeout: close 1011 with WSFPM_ERR_EVENT_TIMEOUT', async () => {
    const h = await startHarness({ eventTimeout: '500' }, 2);
    try {
      const c = await open(h.url('/ev-raw.php'));
      await c.text();
      c.ws.send('sleep|3000');
      assert.equal((await c.closed).code, 1011);
      assert.equal(c.messages.length, 0);
      assert.ok(h.logs.some((l) => l.code === 'WSFPM_ERR_EVENT_TIMEOUT'));
    } finally {
      await h.close();
    }
  });

  it('a saturated pool: new opens get 503, queued events are delivered once workers free up', async () => {
    const h = await startHarness({ handshakeTimeout: '500', eventTimeout: '20s' }, 2);
    try {
      const c = await open(h.url('/ev-raw.php'));
      await c.text();
      // Both workers busy for 2 s with the site's own slow pages.
      let freed = 0;
      const hold = Array.from({ length: 2 }, () => new FcgiRequest({ kind: 'unix', path: h.pool.socket }, Object.entries({
        REQUEST_METHOD: 'GET', SCRIPT_FILENAME: path.join(FIXTURES, 'hang.php'), SCRIPT_NAME: '/hang.php', CONTENT_LENGTH: '0', QUERY_STRING: 'ms=2000',
      }), { onHead() {}, onStdout() {}, onStderr() {}, onEnd: () => void freed++ }, { maxHeaderBlock: 1024 }));
      for (const r of hold) r.endStdin();
      await sleep(300);
      c.ws.send('queued 1');
      c.ws.send('queued 2');
      const r = await refusal(h.url('/ev-raw.php'));
      assert.equal(r.status, 503);
      assert.equal(freed, 0, 'the pool was still saturated when the open was refused');
      assert.equal(c.messages.length, 0, 'nothing answered while no worker is free');
      const got = [await c.text(), await c.text()].join(',');
      assert.match(got, /^#1\/\d queued 1,#2\/\d queued 2$/);
      c.ws.close();
      await c.closed;
    } finally {
      await h.close();
    }
  });

  it('drain: every events-mode client is closed with 1001 and its close event runs before the daemon stops', async () => {
    const h = await startHarness({}, 2);
    const closed = watch(h, 'ev-closed');
    try {
      const clients = await Promise.all(Array.from({ length: 4 }, () => open(h.url('/ev-raw.php'))));
      for (const c of clients) await c.text();
      await withTimeout(h.daemon.drain(5000), 8000, 'drain');
      for (const c of clients) assert.equal((await c.closed).code, 1001);
      assert.equal(closed.filter((l) => l.endsWith(' 1001')).length, 4);
      assert.equal(h.daemon.connections(), 0);
    } finally {
      await h.close();
    }
  });

  it('pings: an idle client that answers stays, one that never answers is dropped, once SIGHUP turned pings on', async () => {
    const h = await startHarness({ pingInterval: '0' }, 2);
    try {
      const deaf = new Client(h.url('/ev-raw.php'), { autoPong: false });
      await deaf.opened;
      const idle = await open(h.url('/ev-raw.php'));
      const { applied } = h.daemon.reload({ ...h.config, pingInterval: 300 });
      assert.deepEqual(applied, ['pingInterval']);
      assert.equal((await withTimeout(deaf.closed, 10_000, 'deaf client dropped')).code, 1006);
      assert.ok(h.logs.some((l) => l.code === 'WSFPM_ERR_PING_TIMEOUT'));
      await sleep(900);
      idle.ws.send('still here');
      assert.equal((await idle.text()).startsWith('welcome'), true);
      assert.equal(await idle.text(), '#1/1 still here');
      idle.ws.close();
      await idle.closed;
    } finally {
      await h.close();
    }
  });

  it('--max-event-connections: an events-mode open beyond it gets 503', async () => {
    const h = await startHarness({ maxEventConnections: '2' }, 2);
    try {
      const a = await open(h.url('/ev-raw.php'));
      const b = await open(h.url('/ev-raw.php'));
      const r = await refusal(h.url('/ev-raw.php'));
      assert.equal(r.status, 503);
      assert.equal(r.headers['x-wsfpm-error'], 'WSFPM_ERR_TOO_MANY');
      // Bound connections have their own count.
      const bound = await open(h.url('/echo.php'));
      bound.ws.send('x');
      assert.ok((await bound.text()).includes('x'));
      for (const c of [a, b, bound]) c.ws.close();
      await Promise.all([a.closed, b.closed, bound.closed]);
    } finally {
      await h.close();
    }
  });

  it('2,000 events-mode connections open and echoing on a pool of 4 workers', async () => {
    const pool = await startPool(4);
    const h = await startDaemon(pool, { maxPerIp: '5000', eventConcurrency: '4', handshakeTimeout: '20s', pingInterval: '0' });
    try {
      const clients: Client[] = [];
      for (let i = 0; i < 2000; i += 100) {
        clients.push(...(await Promise.all(Array.from({ length: 100 }, () => open(h.url('/ev-raw.php'))))));
      }
      await Promise.all(clients.map((c) => c.text(20_000)));
      assert.equal(h.daemon.connections(), 2000);
      for (const [i, c] of clients.entries()) c.ws.send(`n${i}`);
      const echoes = await Promise.all(clients.map((c) => c.text(60_000)));
      for (const [i, e] of echoes.entries()) assert.equal(e, `#1/1 n${i}`);
      for (const c of clients) c.ws.close();
      await Promise.all(clients.map((c) => c.closed));
      await until('every close event', () => h.daemon.connections() === 0, 60_000);
    } finally {
      await h.close();
      await pool.stop();
    }
  });
});

describe('events mode across two daemons on redis-server', () => {
  it('a FORWARD subscription, a publish and a send by id reach events-mode connections on the other node', async () => {
    const redis = await RedisServer.start();
    const pool = await startPool(4);
    const one = await startDaemon(pool, { redis: redis.url });
    const two = await startDaemon(pool, { redis: redis.url });
    try {
      const a = await open(one.url('/ev-raw.php?room=hall'));
      await a.text();
      const b = await open(two.url('/ev-raw.php'));
      await b.text();
      const aId = String(one.daemon.hub.list().find((m) => m.path === '/ev-raw.php')?.id);
      b.ws.send('pub|hall|across nodes');
      assert.equal(await a.text(), 'across nodes');
      b.ws.send(`send|${aId}|to you by id`);
      assert.equal(await a.text(), 'to you by id');
      for (const c of [a, b]) c.ws.close();
      await Promise.all([a.closed, b.closed]);
    } finally {
      await one.close();
      await two.close();
      await pool.stop();
      await redis.stop();
    }
  });
});

describe('events mode through the PHP library (Wsfpm\\Event) and the daemon', () => {
  let h: Harness;
  let closed: string[];
  before(async () => {
    h = await startHarness({}, 2);
    closed = watch(h, 'ev:closed');
  });
  after(async () => h.close());

  it('an echo with its counter in meta, batched, and the close event seeing the last meta', async () => {
    const c = await open(h.url('/ev-echo.php?batch=4'));
    assert.equal(await c.text(), 'hello stranger');
    for (let i = 0; i < 50; i++) c.ws.send(`m${i}`);
    for (let i = 0; i < 50; i++) assert.equal(await c.text(), `#${i + 1} m${i}`);
    c.ws.send('meta');
    assert.deepEqual(JSON.parse(await c.text()), { n: 51 });
    c.ws.close(4000, 'done');
    await until('the close event', () => closed.some((l) => l.includes('"code":4000')));
    const report = JSON.parse(closed.find((l) => l.includes('"code":4000'))!) as { reason: string; n: number };
    assert.equal(report.reason, 'done');
    assert.equal(report.n, 51);
  });

  it('a fatal error or an uncaught exception after queueing a send and a publish: neither applies, 1011', async () => {
    for (const what of ['fatal', 'throw']) {
      const before = closed.length;
      const c = await open(h.url('/ev-fatal.php'));
      c.ws.send('ok');
      assert.equal(await c.text(), 'ok');
      c.ws.send(what);
      assert.equal((await c.closed).code, 1011);
      assert.equal(c.messages.length, 0, `${what}: the queued send was not applied`);
      await until('the close event', () => closed.length > before);
      assert.ok(!closed.includes('must never arrive'), `${what}: the queued publish was not applied`);
      assert.ok(!h.logs.some((l) => JSON.stringify(l).includes('boom secret') && l.msg !== 'PHP wrote to stderr'), 'the exception text only in the stderr line');
    }
  });
});
