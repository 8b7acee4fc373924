/**
 * Presence across two wsfpm nodes sharing a real redis-server, with real
 * pusher-js clients on each: one member list everywhere, one member per
 * user across tabs on different nodes, the last tab leaving on any node
 * removes them, and a node that goes away takes its members with it.
 */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { Redis } from 'ioredis';
import { startDaemon, startPool, type Harness } from './helpers/harness.ts';
import { RedisServer } from './helpers/redis.ts';
import { APP_ID, KEY, SECRET, connectPusher, next, pusherApi, subscribed, triggerEvent, type Channel, type Pusher } from './helpers/pusher.ts';
import type { FpmPool } from '../src/fpm/pool.ts';

let redis: RedisServer;
let pool: FpmPool;
let one: Omit<Harness, 'pool'>;
let two: Omit<Harness, 'pool'>;
const clients: Pusher[] = [];

before(async () => {
  redis = await RedisServer.start();
  pool = await startPool(8);
  const flags = { redis: redis.url, pages: 'true', pusherApps: `${APP_ID}:${KEY}:${SECRET}:client-events` };
  one = await startDaemon(pool, flags);
  two = await startDaemon(pool, flags);
});
after(async () => {
  for (const c of clients) c.disconnect();
  await one?.close();
  await two?.close();
  await pool?.stop();
  await redis?.stop();
});

type PresenceChannel = Channel & { members: { count: number; each(f: (m: { id: string }) => void): void } };
const ids = (c: PresenceChannel): string[] => {
  const out: string[] = [];
  c.members.each((m) => out.push(m.id));
  return out.sort();
};
const users = async (h: Omit<Harness, 'pool'>, channel: string): Promise<string[]> =>
  ((await pusherApi(h.port, 'GET', `/apps/${APP_ID}/channels/${channel}/users`)).json.users as Array<{ id: string }>).map((u) => u.id).sort();

it('one member list on every node; a user is one member across nodes and leaves with their last tab anywhere', async () => {
  const channel = 'presence-ok.cluster';
  const alice = await connectPusher(one.port, 'alice', KEY, clients);
  const ca = (await subscribed(alice, channel)) as PresenceChannel;
  const aliceSaw: string[] = [];
  ca.bind('pusher:member_added', (m: { id: string }) => aliceSaw.push(`added ${m.id}`));
  ca.bind('pusher:member_removed', (m: { id: string }) => aliceSaw.push(`removed ${m.id}`));

  const bobAdded = next<{ id: string }>(ca, 'pusher:member_added');
  const bobOnTwo = await connectPusher(two.port, 'bob', KEY, clients);
  const cb2 = (await subscribed(bobOnTwo, channel)) as PresenceChannel;
  assert.deepEqual(ids(cb2), ['alice', 'bob'], 'node two lists the member of node one');
  assert.equal((await bobAdded).id, 'bob');

  // Bob's second tab, on node one: still one Bob, and nobody is told he was added again.
  const bobOnOne = await connectPusher(one.port, 'bob', KEY, clients);
  const cb1 = (await subscribed(bobOnOne, channel)) as PresenceChannel;
  assert.deepEqual(ids(cb1), ['alice', 'bob']);
  assert.deepEqual(await users(one, channel), ['alice', 'bob']);
  assert.deepEqual(await users(two, channel), ['alice', 'bob']);
  assert.deepEqual((await pusherApi(two.port, 'GET', `/apps/${APP_ID}/channels/${channel}`, undefined, { query: { info: 'user_count,subscription_count' } })).json, { occupied: true, user_count: 2, subscription_count: 3 });

  // An event through node two's API reaches node one's subscribers, as before.
  const got = next(ca, 'ping');
  assert.equal((await triggerEvent(two.port, [channel], 'ping', 1)).status, 200);
  assert.equal(await got, 1);

  // The tab on node two closes: Bob is still there (his tab on node one). Then the last one, on node one.
  bobOnTwo.disconnect();
  const subscribers = async () => (await pusherApi(one.port, 'GET', `/apps/${APP_ID}/channels/${channel}`, undefined, { query: { info: 'subscription_count' } })).json.subscription_count;
  for (const deadline = Date.now() + 10_000; (await subscribers()) !== 2;) {
    assert.ok(Date.now() < deadline, 'node two never let go of the closed tab');
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.deepEqual(await users(one, channel), ['alice', 'bob'], 'node two has let go of the closed tab, and Bob is still a member');
  const removed = next<{ id: string }>(ca, 'pusher:member_removed');
  bobOnOne.disconnect();
  assert.equal((await removed).id, 'bob');
  assert.deepEqual(aliceSaw, ['added bob', 'removed bob']);
  assert.deepEqual(await users(two, channel), ['alice']);
});

it('GET /apps/ID/channels lists the channels of every node', async () => {
  const onTwo = await connectPusher(two.port, 'erin', KEY, clients);
  await subscribed(onTwo, 'listed-on-two');
  await subscribed(onTwo, 'presence-ok.listed');
  const onOne = await connectPusher(one.port, 'frank', KEY, clients);
  await subscribed(onOne, 'listed-on-one');
  const list = async (query: Record<string, string>) => (await pusherApi(one.port, 'GET', `/apps/${APP_ID}/channels`, undefined, { query })).json;
  assert.deepEqual(await list({ filter_by_prefix: 'listed-' }), { channels: { 'listed-on-one': {}, 'listed-on-two': {} } });
  assert.deepEqual(await list({ filter_by_prefix: 'presence-ok.listed', info: 'user_count' }), { channels: { 'presence-ok.listed': { user_count: 1 } } });
  // A prefix is a prefix, not a pattern.
  assert.deepEqual(await list({ filter_by_prefix: 'listed-*' }), { channels: {} });
  assert.deepEqual(await list({ filter_by_prefix: 'l?sted' }), { channels: {} });
  onTwo.disconnect();
  onOne.disconnect();
});

it('members held only by a node that stopped its heartbeat are dropped when the list is read', async () => {
  const channel = 'presence-ok.ghosts';
  // What a crashed node leaves behind: a user whose only socket is on a node with no heartbeat key.
  const r = new Redis(redis.url);
  try {
    await r.hset(`wsfpm:presence:${channel}`, 'ghost', '{"name":"Ghost"}');
    await r.sadd(`wsfpm:presence:${channel}|ghost`, 'deadbeefdeadbeef|1.1');
    const alice = await connectPusher(one.port, 'alice', KEY, clients);
    const ca = (await subscribed(alice, channel)) as PresenceChannel;
    assert.deepEqual(ids(ca), ['alice']);
    assert.equal(await r.hexists(`wsfpm:presence:${channel}`, 'ghost'), 0);
    assert.equal(await r.exists(`wsfpm:presence:${channel}|ghost`), 0);
  } finally {
    r.disconnect();
  }
});

it('a node that goes away takes its members with it', async () => {
  const channel = 'presence-ok.vanishing';
  const alice = await connectPusher(one.port, 'alice', KEY, clients);
  const ca = (await subscribed(alice, channel)) as PresenceChannel;
  const added = next<{ id: string }>(ca, 'pusher:member_added');
  const carol = await connectPusher(two.port, 'carol', KEY, clients);
  await subscribed(carol, channel);
  assert.equal((await added).id, 'carol');
  const removed = next<{ id: string }>(ca, 'pusher:member_removed');
  await two.close();
  // Whether node two's own leave got through before it stopped or not, node one's next read settles it.
  assert.deepEqual(await users(one, channel), ['alice']);
  assert.equal((await removed).id, 'carol');
});
