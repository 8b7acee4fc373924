/**
 * rtt: one connection per system, 2,000 sequential 32 B text echoes each
 * (after 200 warm-up echoes). The connections (raw ws, wsfpm, and the floor:
 * php-fpm with no daemon) take turns message by message (the order reverses
 * every message), so all see the same moments of the shared machine's load:
 * the ratios are what count, not the absolute figures.
 */
import type { Context } from '../lib/context.ts';
import { now, row, summarize, withFloor, type ScenarioResult, type Summary } from '../lib/stats.ts';
import { echoTarget, type EchoTarget } from '../lib/systems.ts';
import { Conversation, textPayload, type EchoSocket } from '../lib/ws.ts';

const WARMUP = 200;
const SIZE = 32;

export async function rtt(ctx: Context): Promise<ScenarioResult> {
  const count = ctx.opts.rttCount;
  const payload = textPayload(SIZE);
  const systems: EchoTarget[] = [echoTarget(ctx.raw), echoTarget(ctx.wsfpm), ...(ctx.floor ? [ctx.floor] : [])];
  const convs = await Promise.all(systems.map(async (s) => {
    const socket = await s.openEcho();
    return new Conversation<EchoSocket>(socket, () => s.closeEcho(socket));
  }));
  const samples: number[][] = systems.map(() => []);
  const forward = systems.map((_, k) => k);
  const backward = [...forward].reverse();
  try {
    for (let i = 0; i < WARMUP + count; i++) {
      for (const k of i % 2 === 0 ? forward : backward) {
        const conv = convs[k]!;
        const t0 = now();
        conv.ws.send(payload, { binary: false });
        const echo = await conv.next(10_000);
        const dt = now() - t0;
        if (echo.length !== SIZE) throw new Error(`${systems[k]!.name}: echo of ${echo.length} bytes, expected ${SIZE}`);
        if (i >= WARMUP) samples[k]!.push(dt);
      }
    }
  } finally {
    await Promise.all(convs.map((c) => c.close()));
  }
  const [raw, ws, floor] = samples.map(summarize) as [Summary, Summary, Summary | undefined];
  const line = (name: string, s: Summary): string => `${name} p50 ${s.p50.toFixed(3)} ms p99 ${s.p99.toFixed(3)} ms`;
  ctx.log(`rtt: ${line('raw', raw)}; ${line('wsfpm', ws)}${floor ? `; ${line('floor', floor)}` : ''}`);
  return {
    rows: [
      withFloor(row('rtt', `p50, ${SIZE} B echo, 1 connection`, 'ms', ws.p50, raw.p50, '≤ 2× raw, ≤ floor + 25 µs', ws.p50 <= 2 * raw.p50 && (!floor || ws.p50 <= floor.p50 + 0.025)), floor?.p50 ?? null),
      withFloor(row('rtt', `p99, ${SIZE} B echo, 1 connection`, 'ms', ws.p99, raw.p99), floor?.p99 ?? null),
    ],
    details: { count, warmup: WARMUP, size: SIZE, raw, wsfpm: ws, floor: floor ?? null },
  };
}
