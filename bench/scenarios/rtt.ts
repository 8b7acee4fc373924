/**
 * rtt: one connection per system, 2,000 sequential 32 B text echoes each
 * (after 200 warm-up echoes). The two connections take turns message by
 * message (which goes first alternates), so both see the same moments of the
 * shared machine's load: the ratio is what counts, not the absolute figure.
 */
import type { Context } from '../lib/context.ts';
import { now, row, summarize, type ScenarioResult } from '../lib/stats.ts';
import type { System } from '../lib/systems.ts';
import { Conversation, textPayload } from '../lib/ws.ts';

const WARMUP = 200;
const SIZE = 32;

export async function rtt(ctx: Context): Promise<ScenarioResult> {
  const count = ctx.opts.rttCount;
  const payload = textPayload(SIZE);
  const systems: System[] = [ctx.raw, ctx.wsfpm];
  const convs = await Promise.all(systems.map((s) => Conversation.open(s.url('echo'))));
  const samples: number[][] = [[], []];
  try {
    for (let i = 0; i < WARMUP + count; i++) {
      const order = i % 2 === 0 ? [0, 1] : [1, 0];
      for (const k of order) {
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
  const raw = summarize(samples[0]!);
  const ws = summarize(samples[1]!);
  ctx.log(`rtt: raw p50 ${raw.p50.toFixed(3)} ms p99 ${raw.p99.toFixed(3)} ms; wsfpm p50 ${ws.p50.toFixed(3)} ms p99 ${ws.p99.toFixed(3)} ms`);
  return {
    rows: [
      row('rtt', `p50, ${SIZE} B echo, 1 connection`, 'ms', ws.p50, raw.p50, '≤ 1.5× raw', ws.p50 <= 1.5 * raw.p50),
      row('rtt', `p99, ${SIZE} B echo, 1 connection`, 'ms', ws.p99, raw.p99),
    ],
    details: { count, warmup: WARMUP, size: SIZE, raw, wsfpm: ws },
  };
}
