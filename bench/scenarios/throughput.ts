/**
 * throughput: 50 connections × 10 messages in flight, echoed; every echo
 * that comes back sends the next message. 32 B and 16 KiB text messages.
 * Per system and size: `--duration` seconds of measurement, split into
 * alternating rounds (raw, wsfpm, floor, floor, wsfpm, raw, …) after 1 s of
 * warm-up each. The floor is the same load over the bench's own FastCGI
 * client straight to php-fpm (bench/lib/floor.ts).
 *
 * Figures: echoes/s; MB/s of echoed payload (one direction, 10^6 bytes);
 * server-side CPU seconds per message from /proc/PID/stat: for wsfpm the
 * daemon child process plus the php-fpm master and all its workers, for the
 * floor the php-fpm master and workers, for the ceiling the raw ws server
 * process. The load generator (this process) is
 * not counted; its own CPU share is recorded to show when it, not the
 * server, was the limit.
 *
 * Stall check: when the time is up, sending stops and every message still in
 * flight must come back within 15 s; and the longest time any one connection
 * waited for its next echo while it had messages in flight is recorded.
 */
import type { Context } from '../lib/context.ts';
import { cpuOf, cpuParts, diffParts } from '../lib/proc.ts';
import { now, row, sleep, withFloor, type Row, type ScenarioResult } from '../lib/stats.ts';
import { alternateAll, echoTarget, type EchoTarget } from '../lib/systems.ts';
import { pooled, textPayload, type EchoSocket } from '../lib/ws.ts';

const WARMUP_MS = 1000;
const DRAIN_TIMEOUT_MS = 15_000;
const BUCKET_MS = 100;

export interface LoadOptions {
  connections: number;
  inFlight: number;
  size: number;
  seconds: number;
}

export interface LoadResult {
  seconds: number;
  messages: number;
  serverCpu: number;
  /** serverCpu by part: daemon / php-fpm (wsfpm), server (raw). */
  cpuByPart: Record<string, number>;
  clientCpu: number;
  /** Longest wait of one connection for its next echo during the measured window, ms. */
  maxConnGapMs: number;
  /** Slowest 100 ms slice of the window, echoes/s. */
  minSliceRate: number;
  drained: boolean;
  drainMs: number;
  /** Messages still unanswered when the drain timed out. */
  stuck: number;
  /** Connections that closed before the end. */
  closedEarly: number;
  badEchoes: number;
}

interface ConnState {
  ws: EchoSocket;
  inFlight: number;
  last: number;
  maxGap: number;
}

export async function runLoad(sys: EchoTarget, o: LoadOptions): Promise<LoadResult> {
  const payload = textPayload(o.size);
  const conns: ConnState[] = [];
  await pooled(o.connections, 10, async () => {
    conns.push({ ws: await sys.openEcho(), inFlight: 0, last: 0, maxGap: 0 });
  });
  let sending = true;
  let measuring = false;
  let t0 = 0;
  let counted = 0;
  let total = 0;
  let inFlight = 0;
  let badEchoes = 0;
  let closedEarly = 0;
  let finished = false;
  const slices: number[] = [];
  let onDrained: (() => void) | null = null;

  for (const st of conns) {
    st.ws.on('message', (data) => {
      if (data.length !== o.size) badEchoes++;
      st.inFlight--;
      inFlight--;
      total++;
      if (measuring) {
        const t = now();
        counted++;
        const gap = t - st.last;
        if (gap > st.maxGap) st.maxGap = gap;
        st.last = t;
        const slice = Math.floor((t - t0) / BUCKET_MS);
        slices[slice] = (slices[slice] ?? 0) + 1;
      }
      if (sending) {
        st.ws.send(payload, { binary: false });
        st.inFlight++;
        inFlight++;
      } else if (inFlight === 0) onDrained?.();
    });
    st.ws.once('close', () => {
      if (!finished) closedEarly++;
      inFlight -= st.inFlight;
      st.inFlight = 0;
      if (!sending && inFlight === 0) onDrained?.();
    });
  }

  try {
    for (const st of conns) {
      for (let i = 0; i < o.inFlight; i++) st.ws.send(payload, { binary: false });
      st.inFlight += o.inFlight;
      inFlight += o.inFlight;
    }
    await sleep(WARMUP_MS);
    const parts0 = cpuParts(sys.side);
    const cpu0 = cpuOf(sys.side);
    const client0 = process.cpuUsage();
    t0 = now();
    for (const st of conns) st.last = t0;
    measuring = true;
    await sleep(o.seconds * 1000);
    measuring = false;
    const t1 = now();
    const cpu1 = cpuOf(sys.side);
    const parts1 = cpuParts(sys.side);
    const client1 = process.cpuUsage(client0);
    const seconds = (t1 - t0) / 1000;
    // Connections that got nothing since their last echo count up to the end of the window.
    for (const st of conns) st.maxGap = Math.max(st.maxGap, t1 - st.last);

    sending = false;
    const d0 = now();
    const drained = inFlight === 0 || (await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), DRAIN_TIMEOUT_MS);
      onDrained = () => {
        clearTimeout(timer);
        resolve(true);
      };
    }));
    const fullSlices = Math.floor((seconds * 1000) / BUCKET_MS);
    let minSlice = Infinity;
    for (let i = 0; i < fullSlices; i++) minSlice = Math.min(minSlice, slices[i] ?? 0);
    return {
      seconds,
      messages: counted,
      serverCpu: cpu1 - cpu0,
      cpuByPart: diffParts(parts0, parts1),
      clientCpu: (client1.user + client1.system) / 1e6,
      maxConnGapMs: Math.max(...conns.map((c) => c.maxGap)),
      minSliceRate: (minSlice * 1000) / BUCKET_MS,
      drained,
      drainMs: now() - d0,
      stuck: inFlight,
      closedEarly,
      badEchoes,
    };
  } finally {
    finished = true;
    await Promise.all(conns.map((c) => sys.closeEcho(c.ws)));
  }
}

function combine(parts: LoadResult[]): LoadResult {
  const sum = (f: (r: LoadResult) => number): number => parts.reduce((a, r) => a + f(r), 0);
  return {
    seconds: sum((r) => r.seconds),
    messages: sum((r) => r.messages),
    serverCpu: sum((r) => r.serverCpu),
    cpuByPart: Object.fromEntries(Object.keys(parts[0]?.cpuByPart ?? {}).map((k) => [k, sum((r) => r.cpuByPart[k] ?? 0)])),
    clientCpu: sum((r) => r.clientCpu),
    maxConnGapMs: Math.max(...parts.map((r) => r.maxConnGapMs)),
    minSliceRate: Math.min(...parts.map((r) => r.minSliceRate)),
    drained: parts.every((r) => r.drained),
    drainMs: Math.max(...parts.map((r) => r.drainMs)),
    stuck: sum((r) => r.stuck),
    closedEarly: sum((r) => r.closedEarly),
    badEchoes: sum((r) => r.badEchoes),
  };
}

export interface Rates {
  msgPerSec: number;
  mbPerSec: number;
  cpuUsPerMsg: number;
  /** Server CPU cores busy on average. */
  serverCores: number;
  clientCores: number;
}

export function rates(r: LoadResult, size: number): Rates {
  return {
    msgPerSec: r.messages / r.seconds,
    mbPerSec: (r.messages * size) / r.seconds / 1e6,
    cpuUsPerMsg: (r.serverCpu / r.messages) * 1e6,
    serverCores: r.serverCpu / r.seconds,
    clientCores: r.clientCpu / r.seconds,
  };
}

export const stalled = (r: LoadResult): boolean => !r.drained || r.closedEarly > 0 || r.badEchoes > 0 || r.maxConnGapMs > 1000;

export async function throughput(ctx: Context): Promise<ScenarioResult> {
  const rows: Row[] = [];
  const details: Record<string, unknown> = {};
  const targets = [echoTarget(ctx.raw), echoTarget(ctx.wsfpm), ...(ctx.floor ? [ctx.floor] : [])];
  for (const size of ctx.opts.sizes) {
    const o: LoadOptions = { connections: ctx.opts.throughputConnections, inFlight: ctx.opts.inFlight, size, seconds: ctx.opts.duration / ctx.opts.rounds };
    const parts: Record<string, LoadResult[]> = Object.fromEntries(targets.map((t) => [t.name, []]));
    for (const sys of alternateAll(targets, ctx.opts.rounds)) {
      await sys.settle();
      const r = await runLoad(sys, o);
      ctx.log(`throughput ${size} B ${sys.name}: ${fmtRate(r, size)}`);
      parts[sys.name]!.push(r);
    }
    const raw = combine(parts.raw!);
    const ws = combine(parts.wsfpm!);
    const fl = parts.floor ? combine(parts.floor) : null;
    const rr = rates(raw, size);
    const wr = rates(ws, size);
    const fr = fl ? rates(fl, size) : null;
    const label = size % 1024 === 0 ? `${size / 1024} KiB` : `${size} B`;
    const small = size < 1024;
    const shape = `${o.connections}×${o.inFlight} in flight`;
    const add = (r: Row, floor: number | null | undefined): void => void rows.push(withFloor(r, floor ?? null));
    if (small) {
      add(row('throughput', `${label} echoes/s, ${shape}`, 'msg/s', wr.msgPerSec, rr.msgPerSec, '≥ 0.65× raw', wr.msgPerSec >= 0.65 * rr.msgPerSec), fr?.msgPerSec);
    } else {
      add(row('throughput', `${label} echoed MB/s, ${shape}`, 'MB/s', wr.mbPerSec, rr.mbPerSec, '≥ 0.85× raw', wr.mbPerSec >= 0.85 * rr.mbPerSec), fr?.mbPerSec);
      add(row('throughput', `${label} echoes/s`, 'msg/s', wr.msgPerSec, rr.msgPerSec), fr?.msgPerSec);
    }
    const split = Object.entries(ws.cpuByPart).map(([k, v]) => `${k} ${((v / ws.messages) * 1e6).toFixed(1)}`).join(' + ');
    add(row('throughput', `${label} server CPU per echo`, 'µs', wr.cpuUsPerMsg, rr.cpuUsPerMsg, '', null, `wsfpm: ${split} µs`), fr?.cpuUsPerMsg);
    add(row('throughput', `${label} load generator CPU`, 'cores', wr.clientCores, rr.clientCores, '', null, '≈1.0 means the client was the limit'), fr?.clientCores);
    const wsStall = stalled(ws);
    const floorStall = fl && stalled(fl) ? `; the floor stalled too (${fl.drained ? 'drained' : `${fl.stuck} never came back`})` : '';
    add(row('throughput', `${label} longest wait for an echo (stall check)`, 'ms', ws.maxConnGapMs, raw.maxConnGapMs, small ? '' : 'no stall', small ? null : !wsStall,
      `${ws.drained ? 'all in flight drained' : `${ws.stuck} never came back`}${ws.closedEarly ? `, ${ws.closedEarly} closed early` : ''}${ws.badEchoes ? `, ${ws.badEchoes} bad echoes` : ''}${floorStall}`), fl?.maxConnGapMs);
    details[label] = { options: o, raw: { ...raw, ...rr }, wsfpm: { ...ws, ...wr }, floor: fl && fr ? { ...fl, ...fr } : null, rounds: parts };
  }
  return { rows, details };
}

function fmtRate(r: LoadResult, size: number): string {
  const x = rates(r, size);
  const split = Object.entries(r.cpuByPart).map(([k, v]) => `${k} ${((v / r.messages) * 1e6).toFixed(1)}`).join(' + ');
  return `${x.msgPerSec.toFixed(0)} msg/s, ${x.mbPerSec.toFixed(1)} MB/s, server ${x.cpuUsPerMsg.toFixed(1)} µs CPU/msg [${split}] (${x.serverCores.toFixed(2)} cores), client ${x.clientCores.toFixed(2)} cores, max gap ${r.maxConnGapMs.toFixed(0)} ms, drained ${r.drained}${r.closedEarly ? `, ${r.closedEarly} closed early` : ''}`;
}
