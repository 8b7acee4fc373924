/**
 * proxy: front mode, where wsfpm sits in front of the site and passes every
 * request that is not one of its websockets to the web server behind it
 * (`upstream`). The site behind is the raw server child's plain HTTP
 * (GET /page: 200, 32 B); the ceiling is the same request sent to it
 * directly. 50 keep-alive connections, each sending its next request as
 * soon as the answer is in; requests/s and latency, alternating rounds.
 *
 * Whether front mode exists is found out by asking, not by reading the
 * source: a daemon is started with `upstream` set and one GET goes through
 * it. If the answer does not come from the site behind (the option is
 * unknown, or not wired yet), the scenario reports "skipped: front mode not
 * built" instead of measuring something else under this name.
 */
import http from 'node:http';
import type { FpmPool } from '../../src/fpm/pool.ts';
import type { Context } from '../lib/context.ts';
import { cpuParts, diffParts } from '../lib/proc.ts';
import { now, row, sleep, summarize, type ScenarioResult } from '../lib/stats.ts';
import { startPool, startWsfpm, type System } from '../lib/systems.ts';

const CONCURRENCY = 50;

function get(agent: http.Agent, port: number): Promise<{ status: number; upstream: boolean; length: number }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/page', agent }, (res) => {
      let length = 0;
      res.on('data', (c: Buffer) => (length += c.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, upstream: res.headers['x-bench-upstream'] === '1', length }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')));
  });
}

interface HttpRun {
  seconds: number;
  ok: number;
  failed: number;
  latencies: number[];
  cpu: Record<string, number>;
}

export async function httpLoad(port: number, seconds: number, side: System['side'] | null): Promise<HttpRun> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const run: HttpRun = { seconds: 0, ok: 0, failed: 0, latencies: [], cpu: {} };
  let measuring = false;
  let running = true;
  const lane = async (): Promise<void> => {
    while (running) {
      const t = now();
      try {
        const r = await get(agent, port);
        if (measuring) {
          if (r.status === 200 && r.upstream) {
            run.ok++;
            run.latencies.push(now() - t);
          } else run.failed++;
        }
      } catch {
        if (measuring) run.failed++;
      }
    }
  };
  const lanes = Array.from({ length: CONCURRENCY }, lane);
  await sleep(1000);
  const cpu0 = side ? cpuParts(side) : {};
  const t0 = now();
  measuring = true;
  await sleep(seconds * 1000);
  measuring = false;
  run.seconds = (now() - t0) / 1000;
  if (side) run.cpu = diffParts(cpu0, cpuParts(side));
  running = false;
  await Promise.all(lanes);
  agent.destroy();
  return run;
}

export async function proxy(ctx: Context): Promise<ScenarioResult> {
  const upstreamPort = ctx.raw.child.port;
  let ownPool: FpmPool | null = null;
  let front: System | null = null;
  try {
    const pool = ctx.pool ?? (ownPool = await startPool(2));
    try {
      front = await startWsfpm(pool, { maxConnections: 1000, flags: { upstream: `http://127.0.0.1:${upstreamPort}` }, nodeFlags: ctx.profileFlags('wsfpm') });
      ctx.profiled(front.child);
    } catch (err) {
      return { rows: [], details: { probe: String(err) }, skipped: `skipped: front mode not built (a daemon with upstream set did not start: ${(err as Error).message})` };
    }
    const agent = new http.Agent({ keepAlive: false });
    const probe = await get(agent, front.child.port).catch((err: Error) => ({ status: 0, upstream: false, length: 0, error: err.message }));
    agent.destroy();
    if (!probe.upstream) {
      return { rows: [], details: { probe }, skipped: `skipped: front mode not built (GET /page through the daemon answered ${probe.status || 'nothing'}, not the site behind it)` };
    }
    const runs: Record<string, HttpRun[]> = { direct: [], wsfpm: [] };
    const order = ['direct', 'wsfpm', 'wsfpm', 'direct'].slice(0, 2 * Math.max(1, Math.min(ctx.opts.rounds, 2)));
    for (const which of order) {
      const r = which === 'wsfpm' ? await httpLoad(front.child.port, ctx.opts.duration / ctx.opts.rounds, front.side) : await httpLoad(upstreamPort, ctx.opts.duration / ctx.opts.rounds, null);
      ctx.log(`proxy ${which}: ${(r.ok / r.seconds).toFixed(0)} req/s, p99 ${summarize(r.latencies).p99.toFixed(2)} ms, ${r.failed} failed`);
      runs[which]!.push(r);
    }
    const agg = (rs: HttpRun[]) => ({
      reqPerSec: rs.reduce((a, r) => a + r.ok, 0) / rs.reduce((a, r) => a + r.seconds, 0),
      latency: summarize(rs.flatMap((r) => r.latencies)),
      failed: rs.reduce((a, r) => a + r.failed, 0),
      daemonCpuUsPerReq: (rs.reduce((a, r) => a + (r.cpu.daemon ?? 0), 0) / (rs.reduce((a, r) => a + r.ok, 0) || 1)) * 1e6,
    });
    const direct = agg(runs.direct!);
    const ws = agg(runs.wsfpm!);
    return {
      rows: [
        row('proxy', `req/s through wsfpm (front mode) vs direct, ${CONCURRENCY} keep-alive`, 'req/s', ws.reqPerSec, direct.reqPerSec, '≥ 0.8× direct', ws.reqPerSec >= 0.8 * direct.reqPerSec && ws.failed === 0, `${ws.failed} failed; raw column: the site behind, asked directly`),
        row('proxy', 'p99 request latency', 'ms', ws.latency.p99, direct.latency.p99),
        row('proxy', 'daemon CPU per proxied request', 'µs', ws.daemonCpuUsPerReq, null),
      ],
      details: { direct, wsfpm: ws, probe },
    };
  } finally {
    await front?.child.stop();
    await ownPool?.stop();
  }
}
