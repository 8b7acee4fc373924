/**
 * Channels, sends by id and the control API, against a real php-fpm: PHP
 * speaks the hub frames (by hand here, to test the daemon against the spec),
 * page requests use the control API, and bad input is refused precisely.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { open, startHarness, type Client, type Harness } from './helpers/harness.ts';

let h: Harness;
let base: string;
let token: string;

before(async () => {
  h = await startHarness({ highWater: '64k' }, 12);
  const c = h.daemon.control!;
  base = `http://${c.address.replace(/^tcp:/, '')}`;
  token = c.token;
});
after(async () => h?.close());

async function api(method: string, path: string, body?: unknown, auth = token): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(base + path, {
    method,
    headers: { ...(auth ? { authorization: `Bearer ${auth}` } : {}), ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function member(): Promise<{ c: Client; id: string }> {
  const c = await open(h.url('/hub-raw.php'));
  c.ws.send('id');
  const id = await c.text();
  assert.equal(await c.text(), 'ok id');
  return { c, id };
}

async function command(c: Client, cmd: string): Promise<void> {
  c.ws.send(cmd);
  const name = cmd.split('|')[0];
  for (;;) {
    const m = await c.text();
    if (m === `ok ${name}`) return;
  }
}

describe('channels from PHP', () => {
  it('delivers a publish to every forward subscriber, excluding the publisher when asked', async () => {
    const a = await member();
    const b = await member();
    const x = await member();
    await command(a.c, 'fsub|room:1');
    await command(b.c, 'fsub|room:1');
    await command(x.c, 'fsub|room:2');
    a.c.ws.send('pub|room:1|hello all');
    const seenByA: string[] = [];
    for (;;) {
      const m = await a.c.text();
      if (m === 'ok pub') break;
      seenByA.push(m);
    }
    assert.deepEqual(seenByA, ['hello all']);
    assert.equal(await b.c.text(), 'hello all');
    await command(a.c, 'pubx|room:1|not to me');
    assert.equal(await b.c.text(), 'not to me');
    // Presence over the control API.
    const room = await api('GET', '/channels/room:1');
    assert.deepEqual(new Set(room.json.members as string[]), new Set([a.id, b.id]));
    await command(b.c, 'unsub|room:1');
    assert.deepEqual((await api('GET', '/channels/room:1')).json.members, [a.id]);
    assert.equal(x.c.messages.length, 0, 'room:2 heard nothing of room:1');
    for (const m of [a, b, x]) m.c.ws.close();
    await Promise.all([a, b, x].map((m) => m.c.closed));
    assert.deepEqual((await api('GET', '/channels/room:1')).json.members, [], 'closing leaves every channel');
  });

  it('sends to another connection by id', async () => {
    const a = await member();
    const b = await member();
    a.c.ws.send(`send|${b.id}|psst`);
    assert.equal(await b.c.text(), 'psst');
    a.c.ws.close();
    b.c.ws.close();
    await Promise.all([a.c.closed, b.c.closed]);
  });

  it('closes 1011 when PHP subscribes to an invalid channel name', async () => {
    const a = await member();
    a.c.ws.send('sub|has space');
    assert.equal((await a.c.closed).code, 1011);
    assert.ok(h.logs.some((l) => l.code === 'WSFPM_ERR_PHP_FRAME' && /invalid channel name/.test(String(l.detail))));
  });
});

describe('control API', () => {
  it('publishes, sends, lists and closes, answering how many connections it reached', async () => {
    const a = await member();
    const b = await member();
    await command(a.c, 'fsub|news');
    await command(b.c, 'fsub|news');
    const pub = await api('POST', '/publish', { channel: 'news', data: 'extra' });
    assert.deepEqual(pub, { status: 200, json: { reached: 2 } });
    assert.equal(await a.c.text(), 'extra');
    assert.equal(await b.c.text(), 'extra');
    const bin = await api('POST', '/publish', { channel: 'news', data: Buffer.from([0, 1, 2]).toString('base64'), binary: true, exclude: a.id });
    assert.equal(bin.json.reached, 1);
    const got = await b.c.next();
    assert.equal(got.binary, true);
    assert.deepEqual([...got.data], [0, 1, 2]);
    assert.deepEqual((await api('POST', '/send', { id: a.id, data: 'direct' })).json, { reached: 1 });
    assert.equal(await a.c.text(), 'direct');
    const list = await api('GET', '/connections');
    const ids = (list.json.connections as Array<{ id: string; path: string; channels: string[] }>).map((c) => c.id);
    assert.ok(ids.includes(a.id) && ids.includes(b.id));
    assert.deepEqual((await api('POST', '/close', { id: b.id, code: 4000, reason: 'kicked' })).json, { reached: 1 });
    assert.deepEqual(await b.c.closed, { code: 4000, reason: 'kicked' });
    a.c.ws.close();
    await a.c.closed;
    assert.deepEqual((await api('POST', '/send', { id: a.id, data: 'gone' })).json, { reached: 0 }, 'a send to a vanished id reaches 0');
    assert.deepEqual((await api('POST', '/publish', { channel: 'nobody-here', data: 'x' })).json, { reached: 0 });
  });

  it('refuses requests without the token, bad channel names and bad ids', async () => {
    assert.equal((await api('POST', '/publish', { channel: 'news', data: 'x' }, '')).status, 401);
    assert.equal((await api('POST', '/publish', { channel: 'news', data: 'x' }, 'wrong-token-wrong-token')).status, 401);
    const bad = await api('POST', '/publish', { channel: 'no spaces allowed', data: 'x' });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.code, 'WSFPM_ERR_CONTROL_REQUEST');
    assert.equal((await api('POST', '/publish', { channel: 'x'.repeat(129), data: 'x' })).status, 400);
    assert.equal((await api('POST', '/send', { id: 'nope', data: 'x' })).status, 400);
    assert.equal((await api('POST', '/publish', { channel: 'news' })).status, 400);
    assert.equal((await api('GET', '/healthz', undefined, '')).status, 200);
  });

  it('closes 1013 a subscriber that cannot keep up instead of growing memory', async () => {
    const slow = await member();
    await command(slow.c, 'fsub|flood');
    slow.c.ws.pause();
    const chunk = 'x'.repeat(16 * 1024);
    let reached = 0;
    for (let i = 0; i < 2000 && slow.c.ws.readyState === slow.c.ws.OPEN; i++) {
      reached += ((await api('POST', '/publish', { channel: 'flood', data: chunk })).json.reached as number);
      if (reached < i + 1) break;
    }
    slow.c.ws.resume();
    assert.equal((await slow.c.closed).code, 1013);
    assert.ok(h.logs.some((l) => l.code === 'WSFPM_ERR_SLOW_CONSUMER'));
    assert.ok(reached < 2000, 'deliveries stopped once the queue was full');
  });
});
