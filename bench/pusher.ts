/**
 * `npm run bench -- pusher [--subscribers N] [--seconds S] [--window W]`:
 * the Pusher face, side by side with the raw ws server in the same run
 * (issue 12; reported, no target).
 *
 * N pusher-js-style subscribers (protocol 7 spoken by plain ws clients:
 * connection_established, pusher:subscribe, subscription_succeeded) on one
 * public channel. Then, for S seconds, W events in flight: each one POSTed
 * to the signed HTTP API (`POST /apps/ID/events`, as Laravel's broadcaster
 * does), the next one sent once all N subscribers got one. Figures: API
 * events/s, deliveries/s (events × N), and p50/p99 from the POST to the
 * last subscriber. Raw: the same loop through its /pub → /sub broadcast.
 */
import WebSocket from 'ws';
import { APP_ID, KEY, SECRET, signedUrl } from '../test/helpers/pusher.ts';
import { stopAllChildren } from './lib/child.ts';
import { now, summarize } from './lib/stats.ts';
import { startPool, startRaw, startWsfpm } from './lib/systems.ts';

const args = process.argv.slice(2).filter((a) => a !== 'pusher');
const opt = (name: string, d: number): number => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? d : Number(args[i + 1]);
};
const N = opt('subscribers', 1000);
const SECONDS = opt('seconds', 10);
const WINDOW = opt('window', 4);
const OPEN_CONCURRENCY = 50;

async function openAll(n: number, open: () => Promise<WebSocket>): Promise<WebSocket[]> {
  const out: WebSocket[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: OPEN_CONCURRENCY }, async () => {
    while (next++ < n) out.push(await open());
  }));
  return out;
}

function pusherSubscriber(port: number): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/app/${KEY}?protocol=7&client=js&version=8.4.0`, { perMessageDeflate: false });
    ws.once('error', reject);
    const onMessage = (raw: Buffer): void => {
      const m = JSON.parse(raw.toString()) as { event: string };
      if (m.event === 'pusher:connection_established') ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: 'bench' } }));
      else if (m.event === 'pusher_internal:subscription_succeeded') {
        ws.off('message', onMessage);
        resolve(ws);
      }
    };
    ws.on('message', onMessage);
  });
}

function rawSubscriber(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.once('error', reject);
    ws.once('message', () => resolve(ws)); // 'ready'
  });
}

/** The closed loop: W events in flight, each complete when every subscriber has it. */
async function loop(subscribers: WebSocket[], idOf: (data: Buffer) => number, publish: (id: number) => void): Promise<{ events: number; perSecond: number; deliveriesPerSecond: number; p50: number; p99: number }> {
  const got = new Map<number, number>();
  const sentAt = new Map<number, number>();
  const latencies: number[] = [];
  let nextId = 0;
  let stop = false;
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  let inFlight = 0;
  const send = (): void => {
    if (stop) {
      if (inFlight === 0) done();
      return;
    }
    const id = nextId++;
    sentAt.set(id, now());
    inFlight++;
    publish(id);
  };
  for (const ws of subscribers) {
    ws.on('message', (data: Buffer) => {
      const id = idOf(data);
      const n = (got.get(id) ?? 0) + 1;
      got.set(id, n);
      if (n === subscribers.length) {
        latencies.push(now() - sentAt.get(id)!);
        got.delete(id);
        inFlight--;
        send();
      }
    });
  }
  const t0 = now();
  for (let i = 0; i < WINDOW; i++) send();
  setTimeout(() => (stop = true), SECONDS * 1000);
  await finished;
  const seconds = (now() - t0) / 1000;
  const s = summarize(latencies);
  return { events: latencies.length, perSecond: latencies.length / seconds, deliveriesPerSecond: (latencies.length * subscribers.length) / seconds, p50: s.p50, p99: s.p99 };
}

async function main(): Promise<void> {
  console.log(`pusher bench: ${N} subscribers, ${WINDOW} events in flight, ${SECONDS} s per system`);
  const pool = await startPool(2);
  const wsfpm = await startWsfpm(pool, { maxConnections: N + 64, flags: { pusherApps: `${APP_ID}:${KEY}:${SECRET}`, pingInterval: '0', logLevel: 'silent' } });
  const raw = await startRaw();
  try {
    const rawSubs = await openAll(N, () => rawSubscriber(raw.url('sub')));
    const pub = new WebSocket(raw.url('pub'));
    await new Promise((r) => pub.once('open', r));
    const rawRun = await loop(rawSubs, (d) => Number(d.toString()), (id) => pub.send(String(id)));
    for (const ws of [...rawSubs, pub]) ws.terminate();

    const port = wsfpm.child.port;
    const subs = await openAll(N, () => pusherSubscriber(port));
    const path = `/apps/${APP_ID}/events`;
    const publish = (id: number): void => {
      const body = JSON.stringify({ name: 'bench', channels: ['bench'], data: String(id) });
      void fetch(signedUrl(port, 'POST', path, body), { method: 'POST', headers: { 'content-type': 'application/json' }, body }).then((r) => {
        if (r.status !== 200) throw new Error(`HTTP API answered ${r.status}`);
        return r.arrayBuffer();
      });
    };
    const idOf = (d: Buffer): number => Number((JSON.parse(d.toString()) as { data: string }).data);
    const run = await loop(subs, idOf, publish);
    for (const ws of subs) ws.terminate();
    console.log(JSON.stringify({ subscribers: N, window: WINDOW, wsfpm: run, raw: rawRun, ratio: { deliveriesPerSecond: run.deliveriesPerSecond / rawRun.deliveriesPerSecond } }, null, 2));
  } finally {
    await stopAllChildren();
    await pool.stop();
  }
}

await main();
