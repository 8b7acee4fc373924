/**
 * History in a real redis-server shared by two daemons: a client that was
 * on node one resumes on node two and gets what was published (on either
 * node) while it was away; a flushed Redis makes a new epoch, so a client
 * of the old one is told it lost history.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, it } from 'node:test';
import { open, sleep, type Client, type Harness } from './helpers/harness.ts';
import { startTwoNodes, type RedisServer } from './helpers/redis.ts';
import { envelope, publishVia, type Envelope } from './helpers/history.ts';

let nodes: Awaited<ReturnType<typeof startTwoNodes>>;
let redis: RedisServer;
let one: Omit<Harness, 'pool'>;
let two: Omit<Harness, 'pool'>;

before(async () => {
  nodes = await startTwoNodes(6);
  ({ redis, one, two } = nodes);
});
after(async () => nodes?.stop());

const publish = (h: Omit<Harness, 'pool'>, channel: string, data: string): Promise<void> => publishVia(h.daemon, channel, data);

/**
 * Envelopes up to the subscription's notice. The script's own "ready" may come
 * before them: with Redis the daemon answers the SUBSCRIBE when Redis has, and
 * only the channel's own messages are ordered behind it.
 */
async function untilNotice(c: Client): Promise<{ got: Envelope[]; ready: boolean }> {
  const got: Envelope[] = [];
  let ready = false;
  for (;;) {
    const text = await c.text();
    if (text === 'ready' && !ready) {
      ready = true;
      continue;
    }
    const e = JSON.parse(text) as Envelope;
    got.push(e);
    if (e.wsfpm !== 'message') return { got, ready };
  }
}

/** A fresh history subscription on `h`: its client, its `subscribed` notice, the script's "ready" read. */
async function subscribe(h: Omit<Harness, 'pool'>, room: string): Promise<{ c: Client; first: Envelope }> {
  const c = await open(h.url(`/hist.php?room=${room}`));
  const opened = await untilNotice(c);
  const first = opened.got[0]!;
  assert.equal(first.wsfpm, 'subscribed');
  if (!opened.ready) assert.equal(await c.text(), 'ready');
  return { c, first };
}

/** Node two learns from the bus that the channel keeps history; wait until it has. */
async function untilKept(h: Omit<Harness, 'pool'>, channel: string): Promise<void> {
  for (let i = 0; i < 100 && !h.daemon.hub.history?.keeps(channel); i++) await sleep(20);
  assert.equal(h.daemon.hub.history?.keeps(channel), true);
}

it('a client resumes on the other node: messages published on both nodes while it was away, in order, once', async () => {
  const { c: a, first } = await subscribe(one, 'deploy');
  await untilKept(two, 'deploy');
  await publish(two, 'deploy', 'm1');
  assert.deepEqual(await envelope(a), { wsfpm: 'message', channel: 'deploy', epoch: first.epoch, offset: 1, data: 'm1' });
  a.ws.close();
  await a.closed;

  await publish(one, 'deploy', 'm2');
  await publish(two, 'deploy', 'm3');
  await publish(one, 'deploy', 'm4');
  const b = await open(two.url(`/hist.php?room=deploy&wsfpm_resume=${first.epoch}.1.deploy`));
  const { got, ready } = await untilNotice(b);
  assert.deepEqual(got.map((e) => `${e.wsfpm} ${e.offset} ${e.data ?? ''}`), ['message 2 m2', 'message 3 m3', 'message 4 m4', 'recovered 4 ']);
  assert.ok(got.every((e) => e.epoch === first.epoch));
  if (!ready) assert.equal(await b.text(), 'ready');
  await publish(one, 'deploy', 'm5');
  assert.deepEqual(await envelope(b), { wsfpm: 'message', channel: 'deploy', epoch: first.epoch, offset: 5, data: 'm5' });
  b.ws.close();
  await b.closed;
});

it('a flushed Redis lost the history: a new epoch, and a client of the old one is told so', async () => {
  const { c: a, first } = await subscribe(one, 'flush');
  await publish(one, 'flush', 'x');
  assert.equal((await envelope(a)).offset, 1);
  a.ws.close();
  await a.closed;
  execFileSync('redis-cli', ['-p', String(redis.port), 'FLUSHALL']);
  const b = await open(two.url(`/hist.php?room=flush&wsfpm_resume=${first.epoch}.1.flush`));
  const lost = (await untilNotice(b)).got[0]!;
  assert.equal(lost.wsfpm, 'lost');
  assert.notEqual(lost.epoch, first.epoch);
  assert.equal(lost.offset, 0);
  b.ws.close();
  await b.closed;
});

it('Redis down: a history channel still delivers on this node, without an offset (nothing to resume from); afterwards offsets go on', async () => {
  const { c: a, first } = await subscribe(one, 'outage-h');
  await publish(one, 'outage-h', 'before');
  assert.equal((await envelope(a)).offset, 1);
  await redis.kill();
  await sleep(300);
  await publish(one, 'outage-h', 'during');
  assert.deepEqual(await envelope(a), { wsfpm: 'message', channel: 'outage-h', data: 'during' });
  await redis.resume();
  for (let i = 0; i < 100 && !one.daemon.broker!.state.connected; i++) await sleep(50);
  assert.equal(one.daemon.broker!.state.connected, true);
  await publish(one, 'outage-h', 'after');
  const after = await envelope(a);
  assert.equal(after.data, 'after');
  // Redis came back empty (no persistence here): a new epoch, and the client learns it from the envelope.
  assert.notEqual(after.epoch, first.epoch);
  assert.equal(after.offset, 1);
  a.ws.close();
  await a.closed;
});
