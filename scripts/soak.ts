/**
 * Soak: `npm run soak -- --minutes N [--connections 1000] [--interval-ms 10000] [--message-bytes 1]`.
 *
 * Starts a php-fpm pool of its own and the wsfpm daemon as a child process
 * (so its memory is its own), opens the connections, and has each send a
 * numbered message every interval to an echo script for N minutes. Every 30 s
 * it samples the daemon's RSS, the php-fpm pool's PSS (master + workers, from
 * /proc/PID/smaps_rollup) split into private/shared and anon/file/shmem, the
 * mean per worker, and the space the pool's php://input spool files hold on
 * disk. At warm-up and at the end it reads the full smaps of a few workers
 * and reports which mappings grew. At the end it waits for the last echoes
 * and reports drift (last sample against the first one after warm-up), the
 * growth per worker in each third of the run (does it level off?) and lost
 * messages. Exit code 1 when a message was lost or out of order.
 */
import { spawn } from 'node:child_process';
import { readdir, readFile, readlink, stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { FpmPool } from '../src/fpm/pool.ts';
import { arg } from './args.ts';
import { children, mappingGrowth, mappings, rollup, ROLLUP_FIELDS, type Rollup } from './proc-mem.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const minutes = arg('minutes', 1);
const connections = arg('connections', 1000);
const intervalMs = arg('interval-ms', 10_000);
/** Pads each message to this size; per-worker memory depends on the bytes read (docs/operations.md). */
const messageBytes = arg('message-bytes', 1);
const SAMPLE_MS = 30_000;

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function kib(file: string, field: RegExp): Promise<number> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return Number(field.exec(text)?.[1] ?? 0);
}

async function spoolBytes(pids: number[], spoolDir: string): Promise<number> {
  let total = 0;
  for (const pid of pids) {
    for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      if (!target.startsWith(spoolDir + '/')) continue;
      const st = await stat(`/proc/${pid}/fd/${fd}`).catch(() => null);
      if (st) total += st.blocks * 512;
    }
  }
  return total;
}

interface Sample {
  atS: number;
  daemonRssMiB: number;
  /** The daemon's V8 heap and Buffers, from its /metrics: what an RSS step is made of. */
  daemonHeap: DaemonHeap;
  fpmPssMiB: number;
  workers: number;
  /** Summed over the workers (not the master), KiB. */
  workersKiB: Rollup;
  /** Mean per worker, KiB. */
  perWorkerPssKiB: number;
  perWorkerPrivateDirtyKiB: number;
  masterPssKiB: number;
  spoolKiB: number;
  sent: number;
  received: number;
}

interface DaemonHeap {
  heapUsedMiB: number;
  heapTotalMiB: number;
  externalMiB: number;
}

/** prom-client's default Node metrics, read off the control listener (no token needed for /metrics). */
async function daemonHeap(controlPort: number): Promise<DaemonHeap> {
  const text = await fetch(`http://127.0.0.1:${controlPort}/metrics`).then((r) => r.text()).catch(() => '');
  const mib = (name: string): number => +(Number(new RegExp(`^${name} ([0-9.e+]+)`, 'm').exec(text)?.[1] ?? 0) / 1048576).toFixed(1);
  return {
    heapUsedMiB: mib('wsfpm_process_nodejs_heap_size_used_bytes'),
    heapTotalMiB: mib('wsfpm_process_nodejs_heap_size_total_bytes'),
    externalMiB: mib('wsfpm_process_nodejs_external_memory_bytes'),
  };
}

/** Connection n's message number k: "n:k", padded to --message-bytes. */
function message(n: number, k: number): string {
  const m = `${n}:${k}:`;
  return m.length >= messageBytes ? m : m + 'x'.repeat(messageBytes - m.length);
}

/** Each rollup field's change per worker between two samples, KiB. */
function growthPerWorker(a: Sample, b: Sample): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of ROLLUP_FIELDS) out[f] = +((b.workersKiB[f] / Math.max(1, b.workers)) - (a.workersKiB[f] / Math.max(1, a.workers))).toFixed(1);
  return out;
}

/** Per-worker PSS growth in each third of the samples: a levelling-off shows as a shrinking last third. */
function thirds(samples: Sample[]): number[] {
  if (samples.length < 4) return [];
  const at = (i: number): Sample => samples[Math.min(samples.length - 1, Math.round(i))]!;
  const n = samples.length - 1;
  return [0, 1, 2].map((k) => at(((k + 1) * n) / 3).perWorkerPssKiB - at((k * n) / 3).perWorkerPssKiB);
}

async function main(): Promise<void> {
  const pool = await FpmPool.start({ maxChildren: connections + 10, privateSessions: true });
  const port = await freePort();
  const controlPort = await freePort();
  const daemon = spawn(process.execPath, [
    path.join(ROOT, 'bin/wsfpm.js'), '--fpm', `unix:${pool.socket}`, '--root', path.join(ROOT, 'examples/echo'),
    '--port', String(port), '--max-connections', String(connections + 10), '--max-per-ip', String(connections + 10),
    '--control', `tcp:127.0.0.1:${controlPort}`, '--log-level', 'warn',
  ], { stdio: ['ignore', 'inherit', 'inherit'] });
  const clients: WebSocket[] = [];
  const expected: number[] = [];
  const samples: Sample[] = [];
  let sent = 0;
  let received = 0;
  let disorder = 0;
  let closedEarly = 0;
  const started = Date.now();
  try {
    for (let i = 0; i < 100; i++) {
      const up = await new Promise<boolean>((r) => net.connect(port, '127.0.0.1').on('connect', function (this: net.Socket) { this.destroy(); r(true); }).on('error', () => r(false)));
      if (up) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    // Open in batches of 50, like a crowd arriving, not a single burst.
    for (let i = 0; i < connections; i += 50) {
      await Promise.all(Array.from({ length: Math.min(50, connections - i) }, (_, k) => new Promise<void>((resolve, reject) => {
        const n = i + k;
        const ws = new WebSocket(`ws://127.0.0.1:${port}/echo.php`);
        expected[n] = 0;
        ws.on('open', () => resolve());
        ws.on('error', reject);
        ws.on('message', (data) => {
          received++;
          if (String(data) !== `echo: ${message(n, expected[n]!)}`) disorder++;
          expected[n]!++;
        });
        ws.on('close', () => {
          if (Date.now() - started < minutes * 60_000) closedEarly++;
        });
        clients[n] = ws;
      })));
    }
    console.error(`soak: ${connections} connections open; ${minutes} min, one message per connection every ${intervalMs} ms`);
    const seq = new Array<number>(connections).fill(0);
    const timers = clients.map((ws, n) => {
      // Spread the sends over the interval.
      const start = setTimeout(() => {
        const t = setInterval(() => {
          if (ws.readyState !== WebSocket.OPEN) return;
          ws.send(message(n, seq[n]!++));
          sent++;
        }, intervalMs);
        timers.push(t as unknown as NodeJS.Timeout);
      }, (n * intervalMs) / connections);
      return start;
    });
    const master = pool.pid!;
    const sample = async (): Promise<void> => {
      const workers = await children(master);
      const sum = Object.fromEntries(ROLLUP_FIELDS.map((f) => [f, 0])) as Rollup;
      for (const pid of workers) {
        const r = await rollup(pid);
        for (const f of ROLLUP_FIELDS) sum[f] += r[f];
      }
      const masterPss = (await rollup(master)).Pss;
      samples.push({
        atS: Math.round((Date.now() - started) / 1000),
        daemonRssMiB: +((await kib(`/proc/${daemon.pid}/status`, /^VmRSS:\s+(\d+) kB/m)) / 1024).toFixed(1),
        daemonHeap: await daemonHeap(controlPort),
        fpmPssMiB: +((sum.Pss + masterPss) / 1024).toFixed(1),
        workers: workers.length,
        workersKiB: sum,
        perWorkerPssKiB: Math.round(sum.Pss / Math.max(1, workers.length)),
        perWorkerPrivateDirtyKiB: Math.round(sum.Private_Dirty / Math.max(1, workers.length)),
        masterPssKiB: masterPss,
        spoolKiB: Math.round((await spoolBytes([master, ...workers], pool.spoolDir)) / 1024),
        sent,
        received,
      });
      console.error(`soak: ${JSON.stringify(samples[samples.length - 1])}`);
    };
    await sample();
    const warmAtMs = Math.min(120, (minutes * 60) / 4) * 1000;
    const end = started + minutes * 60_000;
    // The same few workers, read in full at warm-up and at the end.
    const tracked = (await children(master)).slice(0, 8);
    let warmMaps: Awaited<ReturnType<typeof mappings>>[] | undefined;
    while (Date.now() < end) {
      await new Promise((r) => setTimeout(r, Math.min(SAMPLE_MS, end - Date.now())));
      await sample();
      if (!warmMaps && Date.now() - started >= warmAtMs) warmMaps = await Promise.all(tracked.map(mappings));
    }
    const endMaps = await Promise.all(tracked.map(mappings));
    for (const t of timers) clearTimeout(t);
    for (const t of timers) clearInterval(t);
    // The last echoes.
    for (let i = 0; i < 50 && received < sent; i++) await new Promise((r) => setTimeout(r, 100));
    const warm = samples.find((s) => s.atS * 1000 >= warmAtMs) ?? samples[0]!;
    const last = samples[samples.length - 1]!;
    const drift = (a: number, b: number): number => +(((b - a) / a) * 100).toFixed(2);
    const report = {
      minutes,
      connections,
      intervalMs,
      messageBytes,
      sent,
      received,
      lost: sent - received,
      outOfOrder: disorder,
      closedEarly,
      daemonRssMiB: { warm: warm.daemonRssMiB, last: last.daemonRssMiB, driftPercent: drift(warm.daemonRssMiB, last.daemonRssMiB) },
      daemonHeapMiB: { warm: warm.daemonHeap, last: last.daemonHeap },
      fpmPssMiB: { warm: warm.fpmPssMiB, last: last.fpmPssMiB, driftPercent: drift(warm.fpmPssMiB, last.fpmPssMiB) },
      perWorkerKiB: growthPerWorker(warm, last),
      perWorkerPssGrowthByThirdKiB: thirds(samples.filter((s) => s.atS >= warm.atS)),
      trackedWorkers: tracked.length,
      mappingGrowthKiB: warmMaps ? mappingGrowth(warmMaps, endMaps).slice(0, 12) : [],
      spoolKiBMax: Math.max(...samples.map((s) => s.spoolKiB)),
      samples,
    };
    console.log(JSON.stringify(report, null, 2));
    process.exitCode = report.lost === 0 && disorder === 0 && closedEarly === 0 ? 0 : 1;
  } finally {
    for (const ws of clients) ws?.terminate();
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon.once('exit', r));
    await pool.stop();
  }
}

await main();
