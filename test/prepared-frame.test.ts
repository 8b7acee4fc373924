/**
 * A FORWARD delivery framed once for every subscriber (src/hub/prepared-frame.ts,
 * issue 11 §3): bound and events-mode subscribers on a real php-fpm get every
 * text and binary message intact and in order, also interleaved with messages
 * that go through ws.send; a subscriber that does not read is still closed
 * 1013; and where ws's sender is busy (a Blob being read, permessage-deflate)
 * the message waits its turn behind ws's own frames.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import { PreparedFrame, sendPrepared } from '../src/hub/prepared-frame.ts';
import { forwardSubscriber, open, sleep, startHarness, type Client, type Harness, type Received } from './helpers/harness.ts';

let h: Harness;

before(async () => {
  h = await startHarness({ highWater: '1m', maxPerIp: '1000' }, 12);
});
after(async () => h?.close());

/** A bound subscriber (hub-raw.php, FORWARD) and its connection id. */
const boundSubscriber = (channel: string): Promise<{ c: Client; id: string }> => forwardSubscriber(h, channel);

/** An events-mode subscriber (ev-raw.php subscribes with FORWARD in its open event). */
async function eventsSubscriber(channel: string): Promise<Client> {
  const c = await open(h.url(`/ev-raw.php?room=${channel}`));
  assert.equal(await c.text(), 'welcome stranger');
  return c;
}

async function members(channel: string, n: number): Promise<void> {
  for (let i = 0; i < 200 && h.daemon.hub.members(channel).length < n; i++) await sleep(10);
  assert.equal(h.daemon.hub.members(channel).length, n, `${n} subscribers on ${channel}`);
}

/** Messages of every header size (7-bit, 16-bit and 64-bit lengths), text and binary in turn. */
function messages(count: number): Received[] {
  const sizes = [1, 125, 126, 1000, 65535, 65536, 70_000, 7];
  return Array.from({ length: count }, (_, i) => {
    const size = sizes[i % sizes.length]!;
    const binary = i % 2 === 1;
    const data = binary ? Buffer.alloc(size, i & 0xff) : Buffer.from(`${i}:`.padEnd(size, String.fromCharCode(97 + (i % 26))));
    return { data, binary };
  });
}

async function receive(c: Client, n: number): Promise<Received[]> {
  const out: Received[] = [];
  while (out.length < n) out.push(await c.next());
  return out;
}

function assertSame(got: Received[], want: Received[], who: string): void {
  assert.equal(got.length, want.length, `${who}: count`);
  for (let i = 0; i < want.length; i++) {
    assert.equal(got[i]!.binary, want[i]!.binary, `${who}: message ${i} binary flag`);
    assert.ok(got[i]!.data.equals(want[i]!.data), `${who}: message ${i} intact (${got[i]!.data.length} vs ${want[i]!.data.length} bytes)`);
  }
}

describe('FORWARD deliveries framed once', () => {
  it('reach many bound and events-mode subscribers intact and in order, interleaved with sends by id', async () => {
    const bound = await Promise.all(Array.from({ length: 5 }, () => boundSubscriber('fan')));
    const events = await Promise.all(Array.from({ length: 12 }, () => eventsSubscriber('fan')));
    await members('fan', 17);
    const direct = { data: Buffer.from('by id, through ws.send'), binary: false };
    for (let batch = 0; batch < 6; batch++) {
      const want = messages(8);
      const wantFirst = want.flatMap((m, i) => (i === 3 ? [m, direct] : [m]));
      // A batch in one tick: each subscriber's writes queue up behind each other (about 200 KB, under highWater).
      for (let i = 0; i < want.length; i++) {
        assert.equal(h.daemon.hub.publish('fan', want[i]!.data, want[i]!.binary), 17);
        if (i === 3) h.daemon.hub.send(bound[0]!.id, direct.data, direct.binary);
      }
      assertSame(await receive(bound[0]!.c, wantFirst.length), wantFirst, `batch ${batch}, bound subscriber 0`);
      for (const [k, s] of bound.slice(1).entries()) assertSame(await receive(s.c, want.length), want, `batch ${batch}, bound subscriber ${k + 1}`);
      for (const [k, c] of events.entries()) assertSame(await receive(c, want.length), want, `batch ${batch}, events subscriber ${k}`);
    }
    const all = [...bound.map((s) => s.c), ...events];
    for (const c of all) c.ws.close();
    await Promise.all(all.map((c) => c.closed));
  });

  it('still closes 1013 a subscriber that does not read, bound or events mode, while the others get everything', async () => {
    const slowBound = await boundSubscriber('flood');
    const slowEvents = await eventsSubscriber('flood');
    const fast = await Promise.all([boundSubscriber('flood').then((s) => s.c), eventsSubscriber('flood')]);
    await members('flood', 4);
    slowBound.c.ws.pause();
    slowEvents.ws.pause();
    const chunk = Buffer.alloc(16 * 1024, 'y');
    let published = 0;
    let reached = 4;
    for (; published < 4000 && reached > 2; published++) {
      reached = h.daemon.hub.publish('flood', chunk, false);
      // Let the sockets flush toward the clients that read.
      if (published % 4 === 3) await sleep(1);
    }
    assert.equal(reached, 2, 'deliveries to the slow subscribers stopped; the fast ones still get them');
    slowBound.c.ws.resume();
    slowEvents.ws.resume();
    assert.equal((await slowBound.c.closed).code, 1013);
    assert.equal((await slowEvents.closed).code, 1013);
    assert.ok(h.logs.some((l) => l.code === 'WSFPM_ERR_SLOW_CONSUMER'));
    for (const c of fast) {
      const got = await receive(c, published);
      assert.ok(got.every((m) => !m.binary && m.data.equals(chunk)), 'every flood message intact');
      c.ws.close();
    }
    await Promise.all(fast.map((c) => c.closed));
  });
});

describe('sendPrepared beside ws', () => {
  /** A ws server and one client connected to it; `server` is the server side's socket. */
  async function pair(perMessageDeflate: boolean): Promise<{ server: WebSocket; client: WebSocket; received: Received[]; stop(): Promise<void> }> {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate });
    await once(wss, 'listening');
    const port = (wss.address() as { port: number }).port;
    const client = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate });
    const received: Received[] = [];
    client.on('message', (data, binary) => received.push({ data: data as Buffer, binary }));
    const [server] = (await once(wss, 'connection')) as [WebSocket];
    await once(client, 'open');
    return {
      server,
      client,
      received,
      stop: async () => {
        client.close();
        await once(client, 'close');
        wss.close();
      },
    };
  }

  async function until(received: Received[], n: number): Promise<void> {
    for (let i = 0; i < 500 && received.length < n; i++) await sleep(10);
  }

  it('waits behind a Blob ws is still reading: the order of sends holds', async () => {
    const p = await pair(false);
    p.server.send(new Blob([Buffer.from('first, a Blob')]));
    sendPrepared(p.server, new PreparedFrame(Buffer.from('second, prepared'), false));
    p.server.send(Buffer.from('third'), { binary: true });
    sendPrepared(p.server, new PreparedFrame(Buffer.from([4, 4, 4]), true));
    await until(p.received, 4);
    assert.deepEqual(p.received.map((m) => [m.data.toString('latin1'), m.binary]), [['first, a Blob', true], ['second, prepared', false], ['third', true], ['\x04\x04\x04', true]]);
    await p.stop();
  });

  it('goes through ws.send when permessage-deflate was negotiated', async () => {
    const p = await pair(true);
    const big = Buffer.alloc(4096, 'z');
    for (let i = 0; i < 3; i++) {
      p.server.send(big);
      sendPrepared(p.server, new PreparedFrame(Buffer.from(`prepared ${i}`), false));
    }
    await until(p.received, 6);
    assert.deepEqual(p.received.map((m) => (m.data.equals(big) ? 'big' : m.data.toString())), ['big', 'prepared 0', 'big', 'prepared 1', 'big', 'prepared 2']);
    await p.stop();
  });
});
