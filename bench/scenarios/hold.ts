/**
 * hold: N idle bound connections (1,000, then 5,000), then one 32 B echo on
 * each, all at once: how many survive, and what each costs in memory.
 *
 * wsfpm gets php-fpm masters of its own here, pm static with N + 64 workers
 * in all (each bound connection holds one worker for its whole life, plus
 * headroom for workers still finishing a closed connection), split over
 * ⌈(N + 64) / --hold-master-workers⌉ masters (default 1,000 workers each, the
 * layout docs/deploy.md recommends; a large value gives one master), and a
 * daemon child with maxConnections above N and `--fpm` naming every master. Every connection runs bench/www/hold.php, which
 * first sends its worker's pid, so the bench knows exactly which workers are
 * bound.
 *
 * Memory per bound connection = (daemon PSS with N bound − daemon PSS before)
 * / N + mean PSS of the N bound workers (/proc/PID/smaps_rollup). PSS splits
 * shared pages between the processes that share them, so it adds up to what
 * the machine really spends. Also recorded: idle workers' PSS, the master's,
 * and the all-in figure (daemon + master + every worker) / N.
 * Ceiling: the raw ws server's PSS growth per connection for the same N.
 *
 * Limits are checked first (open files of this process, the daemon, the
 * php-fpm master; memory; pids): an N that does not fit is lowered to what
 * fits, and the result says so.
 */
import { readFileSync } from 'node:fs';
import type { FpmPool } from '../../src/fpm/pool.ts';
import { readPoolStatus } from '../../src/fpm/status.ts';
import type { Context } from '../lib/context.ts';
import { childPids, memAvailableKiB, openFileLimit, pssKiB } from '../lib/proc.ts';
import { now, row, sleep, summarize, type Row, type ScenarioResult, type Summary } from '../lib/stats.ts';
import { startPool, startWsfpm, waitWorkers, type System } from '../lib/systems.ts';
import { closeWs, Conversation, pooled, textPayload } from '../lib/ws.ts';

const HEADROOM = 64;
/** As in the connect scenario; above php-fpm's listen.backlog (64 in FpmPool) a burst of handshakes gets EAGAIN → 503. */
const OPEN_CONCURRENCY = 50;
/**
 * Per-worker memory for the feasibility check, with room to spare: a bound worker measured 0.66 MB PSS
 * under masters of ≤ 1,000 workers and 1.47 MB under one master of 5,064 (the master's O(N²) growth).
 */
function workerBudgetKiB(masterWorkers: number): number {
  return masterWorkers <= 1000 ? 1024 : 2 * 1024;
}

interface HeldRun {
  requested: number;
  opened: number;
  openFailed: number;
  openErrors: string[];
  openSeconds: number;
  echoed: number;
  echoFailed: number;
  echoErrors: string[];
  echoLatency: Summary;
  serverConnections: number;
  pssBeforeKiB: number;
  pssAfterKiB: number;
  /** wsfpm only. */
  workers?: { bound: number; boundPssMeanKiB: number; idle: number; idlePssMeanKiB: number; masterPssKiB: number; allKiB: number };
  heapUsedDelta?: number;
}

async function holdRun(sys: System, n: number, pools: FpmPool[]): Promise<HeldRun> {
  const pid = sys.child.pid;
  await sys.settle(30_000);
  const before = await sys.child.request('stats');
  const pssBeforeKiB = pssKiB(pid);
  const convs: Conversation[] = [];
  const workerPids = new Set<number>();
  const run: HeldRun = {
    requested: n, opened: 0, openFailed: 0, openErrors: [], openSeconds: 0, echoed: 0, echoFailed: 0, echoErrors: [],
    echoLatency: summarize([]), serverConnections: 0, pssBeforeKiB, pssAfterKiB: 0,
  };
  try {
    const t0 = now();
    await pooled(n, OPEN_CONCURRENCY, async () => {
      try {
        const conv = await Conversation.open(sys.url('hold'), 60_000);
        convs.push(conv);
        workerPids.add(Number((await conv.next(30_000)).toString()));
        run.opened++;
      } catch (err) {
        run.openFailed++;
        if (run.openErrors.length < 5) run.openErrors.push((err as Error).message);
      }
    });
    run.openSeconds = (now() - t0) / 1000;
    await sleep(1000);
    const after = await sys.child.request('stats');
    run.serverConnections = Number(after.connections);
    run.pssAfterKiB = pssKiB(pid);
    const heap = (m: unknown): number => (m as { heapUsed: number }).heapUsed;
    run.heapUsedDelta = heap(after.memory) - heap(before.memory);
    if (pools.length > 0) {
      const masters = pools.map((p) => p.pid!).filter(Boolean);
      const all = masters.flatMap((m) => childPids(m));
      let boundSum = 0;
      let idleSum = 0;
      for (const w of all) {
        const p = pssKiB(w);
        if (workerPids.has(w)) boundSum += p;
        else idleSum += p;
      }
      const bound = all.filter((w) => workerPids.has(w)).length;
      const masterPssKiB = masters.reduce((a, m) => a + pssKiB(m), 0);
      run.workers = {
        bound,
        boundPssMeanKiB: boundSum / (bound || 1),
        idle: all.length - bound,
        idlePssMeanKiB: idleSum / (all.length - bound || 1),
        masterPssKiB,
        allKiB: boundSum + idleSum + masterPssKiB,
      };
    }

    // One echo on every held connection, all at once.
    const payload = textPayload(32);
    const latencies: number[] = [];
    await Promise.all(convs.map(async (conv) => {
      const t = now();
      try {
        conv.ws.send(payload, { binary: false });
        const echo = await conv.next(30_000);
        if (echo.length !== 32) throw new Error(`echo of ${echo.length} bytes`);
        latencies.push(now() - t);
        run.echoed++;
      } catch (err) {
        run.echoFailed++;
        if (run.echoErrors.length < 5) run.echoErrors.push((err as Error).message);
      }
    }));
    run.echoLatency = summarize(latencies);
  } finally {
    await Promise.all(convs.map((c) => closeWs(c.ws, 10_000)));
  }
  return run;
}

/** Waits until php-fpm reports every worker idle again (bound scripts ended), in each pool. */
async function poolsIdle(pools: FpmPool[], timeoutMs: number): Promise<void> {
  for (const pool of pools) await poolIdle(pool, timeoutMs);
}

async function poolIdle(pool: FpmPool, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const s = await readPoolStatus({ kind: 'unix', path: pool.statusSocket });
      if (s.active <= 1) return; // the status request itself
    } catch {
      // Not answering yet.
    }
    await sleep(200);
  }
}

/** The largest N the machine allows, and why it is lower than asked. */
function feasible(requested: number, masterWorkers: number): { n: number; limits: string[] } {
  const limits: string[] = [];
  let n = requested;
  const files = openFileLimit();
  // The daemon holds 3 sockets per connection (client, FastCGI, side channel), a php-fpm master 2 pipes per worker,
  // this process 1 socket per connection.
  const byFiles = Math.floor((files.soft - 300 - 2 * HEADROOM) / 3);
  if (byFiles < n) {
    limits.push(`open files: soft limit ${files.soft} (hard ${files.hard}) allows ${byFiles} (the daemon needs 3 per connection)`);
    n = byFiles;
  }
  const budget = workerBudgetKiB(masterWorkers);
  const byMemory = Math.floor((memAvailableKiB() * 0.5) / budget) - HEADROOM;
  if (byMemory < n) {
    limits.push(`memory: half of MemAvailable at ${budget / 1024} MB per worker allows ${byMemory}`);
    n = byMemory;
  }
  const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
  const byPids = Math.floor(pidMax * 0.5) - HEADROOM;
  if (byPids < n) {
    limits.push(`pids: half of pid_max ${pidMax} allows ${byPids}`);
    n = byPids;
  }
  return { n: Math.max(0, n), limits };
}

export async function hold(ctx: Context & { raw: System }): Promise<ScenarioResult> {
  const requested = [...ctx.opts.hold].sort((a, b) => a - b);
  const { n: maxN, limits } = feasible(requested[requested.length - 1] ?? 0, ctx.opts.holdMasterWorkers);
  const sizes = [...new Set(requested.map((n) => Math.min(n, maxN)))];
  if (limits.length) ctx.log(`hold: lowered to ${maxN}: ${limits.join('; ')}`);
  const poolSize = maxN + HEADROOM;
  const files = openFileLimit();
  const rows: Row[] = [];
  const details: Record<string, unknown> = { requested, limits, openFiles: files, poolSize };

  const t0 = now();
  const masters = Math.ceil(poolSize / ctx.opts.holdMasterWorkers);
  const each = Math.ceil(poolSize / masters);
  details.masters = masters;
  // One after another: forking thousands of workers at once only makes each master slower.
  const pools: FpmPool[] = [];
  let daemon: System | null = null;
  try {
    let spawned = 0;
    for (let i = 0; i < masters; i++) {
      const pool = await startPool(each);
      pools.push(pool);
      spawned += await waitWorkers(pool, each, 180_000);
    }
    const spawnSeconds = (now() - t0) / 1000;
    details.poolSpawnSeconds = spawnSeconds;
    details.workersSpawned = spawned;
    ctx.log(`hold: ${masters} php-fpm master(s) forked ${spawned}/${each * masters} workers in ${spawnSeconds.toFixed(1)} s; open files soft limit ${files.soft}`);
    daemon = await startWsfpm(pools, { maxConnections: poolSize, flags: { sideChannel: ctx.opts.sideChannel } });
    const runs: Record<number, { wsfpm: HeldRun; raw: HeldRun }> = {};
    for (const n of sizes) {
      await poolsIdle(pools, 30_000);
      const ws = await holdRun(daemon, n, pools);
      ctx.log(`hold ${n} wsfpm: opened ${ws.opened} in ${ws.openSeconds.toFixed(1)} s, echoed ${ws.echoed} (p99 ${ws.echoLatency.p99.toFixed(1)} ms), ${perConnMiB(ws).toFixed(3)} MB per connection ${ws.openErrors.concat(ws.echoErrors).slice(0, 2).join('; ')}`);
      const raw = await holdRun(ctx.raw, n, []);
      ctx.log(`hold ${n} raw: opened ${raw.opened}, echoed ${raw.echoed}, ${perConnMiB(raw).toFixed(3)} MB per connection`);
      runs[n] = { wsfpm: ws, raw };
      (details[`perConnection${n}`] = { wsfpmMiB: perConnMiB(ws), daemonDeltaKiB: daemonKiB(ws), boundWorkerKiB: ws.workers?.boundPssMeanKiB, allInMiB: allInMiB(ws, n), rawMiB: perConnMiB(raw) });
      const asked = requested.find((r) => Math.min(r, maxN) === n) ?? n;
      const lowered = asked !== n ? ` (asked ${asked}; ${limits.join('; ')})` : '';
      const allHeld = ws.opened === asked && ws.echoed === asked;
      rows.push(row('hold', `${n.toLocaleString('en-US')} bound: connections echoing after idle hold`, 'conns', ws.echoed, raw.echoed,
        `all ${asked.toLocaleString('en-US')} echo`, allHeld,
        `${ws.openFailed} failed to open, ${ws.echoFailed} failed to echo; opened in ${ws.openSeconds.toFixed(1)} s; echo p99 ${ws.echoLatency.p99.toFixed(0)} ms${lowered}`));
      rows.push(row('hold', `${n.toLocaleString('en-US')} bound: memory per connection (daemon Δ + worker PSS)`, 'MB', perConnMiB(ws), perConnMiB(raw), '≤ 0.8 MB', perConnMiB(ws) <= 0.8,
        `daemon Δ ${daemonKiB(ws).toFixed(0)} kB + bound worker ${ws.workers?.boundPssMeanKiB.toFixed(0)} kB; ` +
          `${masters} master(s) of ${each}; ` +
          (n === maxN ? `all-in (daemon + masters + all ${each * masters} workers) / N ${allInMiB(ws, n).toFixed(2)} MB` : `idle workers ${ws.workers?.idlePssMeanKiB.toFixed(0)} kB each`)));
    }
    details.runs = runs;
  } finally {
    await daemon?.child.stop();
    await Promise.all(pools.map((p) => p.stop()));
  }
  return { rows, details };
}

const daemonKiB = (r: HeldRun): number => (r.pssAfterKiB - r.pssBeforeKiB) / (r.opened || 1);
const perConnMiB = (r: HeldRun): number => (daemonKiB(r) + (r.workers?.boundPssMeanKiB ?? 0)) / 1024;
const allInMiB = (r: HeldRun, n: number): number => ((r.workers?.allKiB ?? 0) + r.pssAfterKiB) / 1024 / n;
