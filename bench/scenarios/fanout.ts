/**
 * fanout: 100 subscribers and one publisher per system.
 *
 * wsfpm: each subscriber is bench/www/subscriber.php holding a FORWARD
 * subscription (the daemon sends channel messages straight to its client);
 * the publisher is bench/www/publisher.php, which publish()es every message
 * its own client sends. Ceiling: the raw ws server's /pub, which ws.send()s
 * every message to each /sub connection.
 *
 * The load generator publishes 32 B text messages carrying a sequence
 * number, keeping at most 10 messages not yet received by every subscriber
 * (1,000 deliveries in flight). Figures: deliveries/s (messages received by
 * subscribers per second) and delivery latency (publisher's send → one
 * subscriber's receipt, every delivery a sample).
 */
import type WebSocket from 'ws';
import type { Context } from '../lib/context.ts';
import { cpuOf, cpuParts, diffParts } from '../lib/proc.ts';
import { now, row, sleep, summarize, type ScenarioResult } from '../lib/stats.ts';
import { alternate, type System } from '../lib/systems.ts';
import { closeWs, Conversation, openWs, pooled } from '../lib/ws.ts';

const SIZE = 32;
const WINDOW = 10;
const WARMUP_MS = 1000;

interface FanoutRun {
  seconds: number;
  deliveries: number;
  published: number;
  latencies: number[];
  serverCpu: number;
  cpuByPart: Record<string, number>;
  clientCpu: number;
  drained: boolean;
  closedEarly: number;
  closeCodes: number[];
}

async function fanoutRun(sys: System, subscribers: number, seconds: number): Promise<FanoutRun> {
  const subs: WebSocket[] = [];
  await pooled(subscribers, 20, async () => {
    const conv = await Conversation.open(sys.url('sub'));
    const ready = (await conv.next(10_000)).toString();
    if (ready !== 'ready') throw new Error(`subscriber said ${JSON.stringify(ready)}`);
    conv.ws.removeAllListeners('message');
    subs.push(conv.ws);
  });
  const pub = await openWs(sys.url('pub'));
  const pending = new Map<number, { t: number; got: number }>();
  let alive = subs.length;
  let seq = 0;
  let sending = true;
  let measuring = false;
  let finished = false;
  let t0 = 0;
  let deliveries = 0;
  const latencies: number[] = [];
  const closeCodes: number[] = [];
  let closedEarly = 0;
  let onDrained: (() => void) | null = null;

  const publish = (): void => {
    const s = seq++;
    pending.set(s, { t: now(), got: 0 });
    pub.send(Buffer.from(String(s).padEnd(SIZE, '.'), 'latin1'), { binary: false });
  };
  const complete = (s: number): void => {
    pending.delete(s);
    if (sending) publish();
    else if (pending.size === 0) onDrained?.();
  };
  for (const ws of subs) {
    ws.on('message', (data) => {
      const t = now();
      const s = parseInt((data as Buffer).toString('latin1'), 10);
      const e = pending.get(s);
      if (!e) return;
      if (measuring) {
        deliveries++;
        latencies.push(t - e.t);
      }
      if (++e.got >= alive) complete(s);
    });
    ws.once('close', (code) => {
      if (finished) return;
      closedEarly++;
      closeCodes.push(code);
      alive--;
      for (const [s, e] of [...pending]) if (e.got >= alive) complete(s);
    });
  }

  try {
    for (let i = 0; i < WINDOW; i++) publish();
    await sleep(WARMUP_MS);
    const parts0 = cpuParts(sys.side);
    const cpu0 = cpuOf(sys.side);
    const client0 = process.cpuUsage();
    t0 = now();
    measuring = true;
    await sleep(seconds * 1000);
    measuring = false;
    const elapsed = (now() - t0) / 1000;
    const cpu1 = cpuOf(sys.side);
    const cpuByPart = diffParts(parts0, cpuParts(sys.side));
    const client = process.cpuUsage(client0);
    sending = false;
    const drained = pending.size === 0 || (await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 15_000);
      onDrained = () => {
        clearTimeout(timer);
        resolve(true);
      };
    }));
    return { seconds: elapsed, deliveries, published: seq, latencies, serverCpu: cpu1 - cpu0, cpuByPart, clientCpu: (client.user + client.system) / 1e6, drained, closedEarly, closeCodes };
  } finally {
    finished = true;
    await Promise.all([pub, ...subs].map((ws) => closeWs(ws)));
  }
}

export async function fanout(ctx: Context): Promise<ScenarioResult> {
  const { subscribers, rounds, duration } = ctx.opts;
  const runs: Record<string, FanoutRun[]> = { raw: [], wsfpm: [] };
  for (const sys of alternate(ctx.raw, ctx.wsfpm, rounds)) {
    await sys.settle();
    const r = await fanoutRun(sys, subscribers, duration / rounds);
    const l = summarize(r.latencies);
    ctx.log(`fanout ${sys.name}: ${(r.deliveries / r.seconds).toFixed(0)} deliveries/s, p50 ${l.p50.toFixed(2)} ms p99 ${l.p99.toFixed(2)} ms, server ${(r.serverCpu / r.seconds).toFixed(2)} cores, client ${(r.clientCpu / r.seconds).toFixed(2)} cores, drained ${r.drained}, ${r.closedEarly} closed early ${r.closeCodes.join(',')}`);
    runs[sys.name]!.push(r);
  }
  const agg = (rs: FanoutRun[]) => {
    const seconds = rs.reduce((a, r) => a + r.seconds, 0);
    const deliveries = rs.reduce((a, r) => a + r.deliveries, 0);
    return {
      deliveriesPerSec: deliveries / seconds,
      latency: summarize(rs.flatMap((r) => r.latencies)),
      cpuUsPerDelivery: (rs.reduce((a, r) => a + r.serverCpu, 0) / deliveries) * 1e6,
      cpuUsPerDeliveryByPart: Object.fromEntries(Object.keys(rs[0]?.cpuByPart ?? {}).map((k) => [k, (rs.reduce((a, r) => a + (r.cpuByPart[k] ?? 0), 0) / deliveries) * 1e6])),
      clientCores: rs.reduce((a, r) => a + r.clientCpu, 0) / seconds,
      drained: rs.every((r) => r.drained),
      closedEarly: rs.reduce((a, r) => a + r.closedEarly, 0),
      closeCodes: rs.flatMap((r) => r.closeCodes),
    };
  };
  const raw = agg(runs.raw!);
  const ws = agg(runs.wsfpm!);
  const note = `${ws.drained ? 'all delivered' : 'NOT all delivered'}${ws.closedEarly ? `, ${ws.closedEarly} subscribers closed (${ws.closeCodes.join(',')})` : ''}`;
  return {
    rows: [
      row('fanout', `deliveries/s, ${subscribers} subscribers, 1 PHP publisher`, 'msg/s', ws.deliveriesPerSec, raw.deliveriesPerSec, '≥ 0.95× raw', ws.deliveriesPerSec >= 0.95 * raw.deliveriesPerSec && ws.drained && ws.closedEarly === 0, note),
      row('fanout', 'p99 publish → delivery', 'ms', ws.latency.p99, raw.latency.p99),
      row('fanout', 'p50 publish → delivery', 'ms', ws.latency.p50, raw.latency.p50),
      row('fanout', 'server CPU per delivery', 'µs', ws.cpuUsPerDelivery, raw.cpuUsPerDelivery, '', null,
        `wsfpm: ${Object.entries(ws.cpuUsPerDeliveryByPart).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(' + ')} µs`),
      row('fanout', 'load generator CPU', 'cores', ws.clientCores, raw.clientCores, '', null, '≈1.0 means the client was the limit'),
    ],
    details: { subscribers, window: WINDOW, size: SIZE, raw: { ...raw, latency: raw.latency }, wsfpm: ws },
  };
}
