/**
 * Two wsfpm daemons sharing channels, presence and sends-by-id through a
 * real redis-server; Redis killed and restarted.
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { forwardSubscriber, sleep, startDaemon, type Harness } from './helpers/harness.ts';
import { RedisServer, startTwoNodes } from './helpers/redis.ts';

let nodes: Awaited<ReturnType<typeof startTwoNodes>>;
let redis: RedisServer;
let one: typeof nodes.one;
let two: typeof nodes.two;

before(async () => {
  nodes = await startTwoNodes(8);
  ({ redis, one, two } = nodes);
});
after(async () => nodes?.stop());

async function api(h: Omit<Harness, 'pool'>, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const c = h.daemon.control!;
  const res = await fetch(`http://${c.address.replace(/^tcp:/, '')}${path}`, {
    method,
    headers: { authorization: `Bearer ${c.token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  assert.equal(res.status, 200);
  return (await res.json()) as Record<string, unknown>;
}

/** Waits until the registry write of a subscription has reached Redis. */
async function untilMembers(h: Omit<Harness, 'pool'>, channel: string, n: number): Promise<string[]> {
  for (let i = 0; i < 100; i++) {
    const m = (await api(h, 'GET', `/channels/${channel}`)).members as string[];
    if (m.length === n) return m;
    await sleep(50);
  }
  throw new Error(`channel ${channel} never had ${n} members`);
}

it('a publish on one node reaches subscribers on both; presence and sends cross nodes', async () => {
  const a = await forwardSubscriber(one, 'room');
  const b = await forwardSubscriber(two, 'room');
  assert.deepEqual(new Set(await untilMembers(one, 'room', 2)), new Set([a.id, b.id]));

  a.c.ws.send('pub|room|from node one');
  assert.equal(await b.c.text(), 'from node one');
  const mine: string[] = [];
  for (let m = await a.c.text(); m !== 'ok pub'; m = await a.c.text()) mine.push(m);
  assert.deepEqual(mine, ['from node one']);

  assert.deepEqual(await api(two, 'POST', '/publish', { channel: 'room', data: 'via control on two' }), { reached: 2 });
  assert.equal(await a.c.text(), 'via control on two');
  assert.equal(await b.c.text(), 'via control on two');

  assert.deepEqual(await api(one, 'POST', '/send', { id: b.id, data: 'direct across' }), { reached: 1 });
  assert.equal(await b.c.text(), 'direct across');
  a.c.ws.send(`send|${b.id}|php to php`);
  assert.equal(await b.c.text(), 'php to php');

  b.c.ws.close();
  await b.c.closed;
  await untilMembers(one, 'room', 1);
  assert.deepEqual(await api(one, 'POST', '/send', { id: b.id, data: 'gone' }), { reached: 0 });
  a.c.ws.close();
  await a.c.closed;
});

it('Redis down: local delivery continues and is logged; after a restart cross-node delivery resumes', async () => {
  const a = await forwardSubscriber(one, 'outage');
  const b = await forwardSubscriber(two, 'outage');
  await untilMembers(one, 'outage', 2);
  await redis.kill();
  await sleep(300);
  assert.deepEqual(await api(one, 'POST', '/publish', { channel: 'outage', data: 'local only' }), { reached: 1 });
  assert.equal(await a.c.text(), 'local only');
  assert.ok(one.logs.some((l) => l.code === 'WSFPM_ERR_BROKER_DOWN'));
  assert.equal(one.daemon.broker!.state.connected, false);

  await redis.resume();
  // The registry is written again on reconnect (Redis came back empty).
  await untilMembers(one, 'outage', 2);
  assert.equal(one.daemon.broker!.state.connected, true);
  assert.deepEqual(await api(one, 'POST', '/publish', { channel: 'outage', data: 'across again' }), { reached: 2 });
  assert.equal(await b.c.text(), 'across again');
  assert.equal(await a.c.text(), 'across again');
  // Nothing from the outage arrives late.
  assert.equal(b.c.messages.length, 0);
  a.c.ws.close();
  b.c.ws.close();
  await Promise.all([a.c.closed, b.c.closed]);
});

it('a connection that left while Redis was down is no member once Redis is back with its data', async () => {
  // A Redis that keeps its data across the outage (append-only file), as production ones do: the entries written before it are still there.
  const kept = await RedisServer.start({ persist: true });
  const h = await startDaemon(one.pool, { redis: kept.url });
  try {
    const stays = await forwardSubscriber(h, 'ghosts');
    const leaves = await forwardSubscriber(h, 'ghosts');
    await untilMembers(h, 'ghosts', 2);
    await kept.kill();
    leaves.c.ws.close();
    await leaves.c.closed;
    for (let i = 0; i < 100 && h.daemon.hub.size > 1; i++) await sleep(20);
    assert.equal(h.daemon.hub.size, 1);
    await kept.resume();
    for (let i = 0; i < 100 && !h.daemon.broker!.state.connected; i++) await sleep(50);
    assert.deepEqual(await untilMembers(h, 'ghosts', 1), [stays.id]);
    assert.deepEqual(await api(h, 'POST', '/send', { id: leaves.id, data: 'to a ghost' }), { reached: 0 });
    stays.c.ws.close();
    await stays.c.closed;
  } finally {
    await h.close();
    await kept.stop();
  }
});
