/**
 * connect: 500 connections, 50 at a time. Each opens, sends one 32 B
 * message, waits for its echo, closes and waits for the close to complete;
 * then its lane opens the next. conn/s = connections / wall time of the 500;
 * latency = from `new WebSocket()` to the first echo (for wsfpm this covers
 * the TCP connect, the FastCGI request to php-fpm, PHP's accept(), the 101
 * and one message through PHP). 50 warm-up connections first; rounds
 * alternate between the systems.
 */
import type { Context } from '../lib/context.ts';
import { cpuParts, diffParts } from '../lib/proc.ts';
import { now, row, summarize, type ScenarioResult } from '../lib/stats.ts';
import { alternate, type System } from '../lib/systems.ts';
import { closeWs, Conversation, pooled, textPayload } from '../lib/ws.ts';

const WARMUP = 50;
const SIZE = 32;

interface ConnectRun {
  seconds: number;
  ok: number;
  failed: number;
  errors: string[];
  latencies: number[];
  cpuByPart: Record<string, number>;
}

async function connectRun(sys: System, total: number, concurrency: number): Promise<ConnectRun> {
  const payload = textPayload(SIZE);
  const run: ConnectRun = { seconds: 0, ok: 0, failed: 0, errors: [], latencies: [], cpuByPart: {} };
  const cpu0 = cpuParts(sys.side);
  const t0 = now();
  await pooled(total, concurrency, async () => {
    const start = now();
    let conv: Conversation | null = null;
    try {
      conv = await Conversation.open(sys.url('echo'), 10_000);
      conv.ws.send(payload, { binary: false });
      const echo = await conv.next(10_000);
      if (echo.length !== SIZE) throw new Error(`echo of ${echo.length} bytes`);
      run.latencies.push(now() - start);
      run.ok++;
    } catch (err) {
      run.failed++;
      if (run.errors.length < 5) run.errors.push((err as Error).message);
    } finally {
      if (conv) await closeWs(conv.ws);
    }
  });
  run.seconds = (now() - t0) / 1000;
  run.cpuByPart = diffParts(cpu0, cpuParts(sys.side));
  return run;
}

export async function connect(ctx: Context): Promise<ScenarioResult> {
  const { connectCount: total, connectConcurrency: concurrency, rounds } = ctx.opts;
  for (const sys of [ctx.raw, ctx.wsfpm]) {
    await sys.settle();
    await connectRun(sys, WARMUP, Math.min(concurrency, WARMUP));
  }
  const runs: Record<string, ConnectRun[]> = { raw: [], wsfpm: [] };
  for (const sys of alternate(ctx.raw, ctx.wsfpm, rounds)) {
    await sys.settle();
    const r = await connectRun(sys, total, concurrency);
    ctx.log(`connect ${sys.name}: ${(r.ok / r.seconds).toFixed(0)} conn/s, p99 ${summarize(r.latencies).p99.toFixed(1)} ms, ${r.failed} failed ${r.errors.join('; ')}`);
    runs[sys.name]!.push(r);
  }
  const agg = (rs: ConnectRun[]): { connPerSec: number; failed: number; latency: ReturnType<typeof summarize>; errors: string[]; cpuUsPerConnByPart: Record<string, number> } => ({
    connPerSec: rs.reduce((a, r) => a + r.ok, 0) / rs.reduce((a, r) => a + r.seconds, 0),
    failed: rs.reduce((a, r) => a + r.failed, 0),
    latency: summarize(rs.flatMap((r) => r.latencies)),
    errors: rs.flatMap((r) => r.errors),
    cpuUsPerConnByPart: Object.fromEntries(Object.keys(rs[0]?.cpuByPart ?? {}).map((k) => [k, (rs.reduce((a, r) => a + (r.cpuByPart[k] ?? 0), 0) / rs.reduce((a, r) => a + r.ok, 0)) * 1e6])),
  });
  const raw = agg(runs.raw!);
  const ws = agg(runs.wsfpm!);
  const failures = ws.failed ? `${ws.failed} failed: ${ws.errors[0]}` : 'none failed';
  return {
    rows: [
      row('connect', `conn/s, ${rounds} runs of ${total}, ${concurrency} at a time`, 'conn/s', ws.connPerSec, raw.connPerSec, '≥ 1,500 conn/s', ws.connPerSec >= 1500 && ws.failed === 0, failures),
      row('connect', 'p99 connect → first echo', 'ms', ws.latency.p99, raw.latency.p99, '≤ 50 ms', ws.latency.p99 <= 50),
      row('connect', 'p50 connect → first echo', 'ms', ws.latency.p50, raw.latency.p50),
      row('connect', 'server CPU per connection', 'µs', sumValues(ws.cpuUsPerConnByPart), sumValues(raw.cpuUsPerConnByPart), '', null,
        `wsfpm: ${Object.entries(ws.cpuUsPerConnByPart).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(' + ')} µs`),
      row('connect', 'daemon CPU per connection', 'µs', ws.cpuUsPerConnByPart.daemon ?? null, sumValues(raw.cpuUsPerConnByPart), '≤ 2× raw server', (ws.cpuUsPerConnByPart.daemon ?? Infinity) <= 2 * sumValues(raw.cpuUsPerConnByPart),
        'raw column: the raw server\'s whole cost'),
    ],
    details: { total, concurrency, rounds, raw, wsfpm: ws },
  };
}

const sumValues = (o: Record<string, number>): number => Object.values(o).reduce((a, b) => a + b, 0);
