/**
 * `npm run bench -- events [--connections N] [--active N] [--seconds S]`:
 * events mode at scale, side by side with the raw ws server in the same run.
 *
 *  1. N idle events-mode websockets opened (each open decided by PHP reading
 *     a session: bench/www/ev-notify.php), 50 at a time, from loopback
 *     source addresses 127.0.0.2… (an address per 20,000 connections at
 *     most, so ephemeral ports never run out): opens/s;
 *  2. memory per idle connection: daemon PSS growth / N (raw: its PSS growth
 *     for the same N idle connections);
 *  3. message events through PHP with session_start() in each: `--active`
 *     connections each with one message in flight for `--seconds`:
 *     events/s and p50/p99 echo latency (raw: the same load on /echo);
 *  4. one publish on "all" through the control API: time until all N
 *     clients have it (raw: one /pub message to N /sub clients).
 *
 * The daemon and the raw server each hold N sockets and this process 2N
 * over both runs one at a time, so N must fit the open-files limit of one
 * process (checked first; this machine's hard limit is 20,000).
 */
import http from 'node:http';
import WebSocket from 'ws';
import { fcgiFetch } from '../src/fastcgi/fetch.ts';
import { childPids, cpuSeconds, openFileLimit, pssKiB } from './lib/proc.ts';
import { now, sleep, summarize } from './lib/stats.ts';
import { startPool, startRaw, startWsfpm, WWW, type System } from './lib/systems.ts';
import { stopAllChildren } from './lib/child.ts';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { formatProfile, summarizeProfile } from './lib/profile.ts';

const args = process.argv.slice(2).filter((a) => a !== 'events');
const opt = (name: string, d: number): number => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? d : Number(args[i + 1]);
};
const limit = openFileLimit();
const N = Math.min(opt('connections', 10_000), limit.soft - 500);
const ACTIVE = opt('active', 200);
const SECONDS = opt('seconds', 10);
const WORKERS = 16;
const SESSIONS = 64;
/** `--profile DIR`: the daemon runs under --cpu-prof, its profile summarised at the end. */
const PROFILE_DIR = args.includes('--profile') ? args[args.indexOf('--profile') + 1] ?? '' : '';
/** Above php-fpm's listen.backlog (64 in FpmPool) a burst of opens gets EAGAIN, which is a 503 (as in the hold scenario). */
const OPEN_CONCURRENCY = 50;

const source = (i: number): string => `127.0.0.${2 + Math.floor(i / 20_000)}`;

function openOne(url: string, i: number, headers: Record<string, string>): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { localAddress: source(i), headers, perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_q, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
}

async function openAll(url: string, n: number, cookies: string[]): Promise<{ sockets: WebSocket[]; seconds: number; failed: number }> {
  const sockets: WebSocket[] = [];
  let failed = 0;
  let next = 0;
  const t0 = now();
  await Promise.all(Array.from({ length: OPEN_CONCURRENCY }, async () => {
    while (next < n) {
      const i = next++;
      try {
        sockets.push(await openOne(url, i, cookies.length ? { Cookie: cookies[i % cookies.length]! } : {}));
      } catch {
        failed++;
      }
    }
  }));
  return { sockets, seconds: (now() - t0) / 1000, failed };
}

interface Memory {
  pssKiB: number;
  heapUsed: number;
  external: number;
}

async function memory(sys: System): Promise<Memory> {
  await sys.child.request('stats'); // runs a GC first
  await sleep(500);
  const s = (await sys.child.request('stats')) as { memory: NodeJS.MemoryUsage };
  return { pssKiB: pssKiB(sys.child.pid), heapUsed: s.memory.heapUsed, external: s.memory.external };
}

/** Growth per connection, KiB: PSS (what the machine spends), and of it the JS heap and Buffers. */
const perConnection = (a: Memory, b: Memory, n: number): { pss: number; heap: number; external: number } => ({
  pss: (b.pssKiB - a.pssKiB) / n,
  heap: (b.heapUsed - a.heapUsed) / 1024 / n,
  external: (b.external - a.external) / 1024 / n,
});

async function echoLoad(url: string, cookies: string[]): Promise<{ perSecond: number; p50: number; p99: number }> {
  const { sockets: clients } = await openAll(url, ACTIVE, cookies);
  const latencies: number[] = [];
  let stop = false;
  await Promise.all(clients.map((ws) => new Promise<void>((resolve) => {
    let sent = 0;
    const fire = (): void => {
      if (stop) return resolve();
      sent = now();
      ws.send('ping');
    };
    ws.on('message', () => {
      latencies.push(now() - sent);
      fire();
    });
    fire();
    setTimeout(() => { stop = true; }, SECONDS * 1000);
  })));
  for (const ws of clients) ws.terminate();
  const s = summarize(latencies);
  return { perSecond: latencies.length / SECONDS, p50: s.p50, p99: s.p99 };
}

function reachAll(sockets: WebSocket[], send: () => void): Promise<number> {
  return new Promise((resolve) => {
    let left = sockets.length;
    const t0 = now();
    for (const ws of sockets) ws.once('message', () => { if (--left === 0) resolve((now() - t0) / 1000); });
    send();
  });
}

function controlPublish(address: string, token: string, channel: string, data: string): Promise<void> {
  const [host, port] = address.replace(/^tcp:/, '').split(':');
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port: Number(port), path: '/publish', method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve());
    });
    req.on('error', reject);
    req.end(JSON.stringify({ channel, data }));
  });
}

async function main(): Promise<void> {
  console.log(`events bench: ${N} idle connections (open files: soft ${limit.soft}, hard ${limit.hard}), ${ACTIVE} active for ${SECONDS} s, php-fpm pool of ${WORKERS}`);
  const pool = await startPool(WORKERS);
  const token = 'bench-control-token-0123456789';
  const wsfpm = await startWsfpm(pool, { maxConnections: 64, nodeFlags: PROFILE_DIR ? ['--cpu-prof', '--cpu-prof-dir', PROFILE_DIR] : [], flags: { maxEventConnections: String(N + ACTIVE + 10), maxPerIp: String(N + ACTIVE + 10), eventConcurrency: String(WORKERS), pingInterval: '0', controlToken: token, logLevel: 'silent' } });
  const raw = await startRaw();
  const results: Record<string, unknown> = {};
  try {
    const script = path.join(WWW, 'ev-notify.php');
    const cookies: string[] = [];
    for (let u = 0; u < SESSIONS; u++) {
      const r = await fcgiFetch({ kind: 'unix', path: pool.socket }, { REQUEST_METHOD: 'GET', SCRIPT_FILENAME: script, SCRIPT_NAME: '/ev-notify.php', QUERY_STRING: `login=${u}`, REQUEST_URI: `/ev-notify.php?login=${u}` });
      cookies.push(`PHPSESSID=${r.body.toString()}`);
    }
    const url = `ws://127.0.0.1:${wsfpm.child.port}/ev-notify.php`;

    const rawBefore = await memory(raw);
    const rawOpen = await openAll(raw.url('sub'), N, []);
    await sleep(1000);
    const rawAfter = await memory(raw);
    const rawReach = await reachAll(rawOpen.sockets, () => {
      const pub = new WebSocket(raw.url('pub'));
      pub.once('open', () => pub.send('hello everyone'));
    });
    for (const ws of rawOpen.sockets) ws.terminate();
    await raw.settle(30_000);
    const rawEcho = await echoLoad(raw.url('echo'), []);

    const before = await memory(wsfpm);
    const opened = await openAll(url, N, cookies);
    await sleep(1000);
    const after = await memory(wsfpm);
    const control = (await wsfpm.child.request('stats')) as { connections: number };
    const reach = await reachAll(opened.sockets, () => void controlPublish(wsfpm.child.control, token, 'all', 'hello everyone'));
    // Where the CPU of an event goes: the daemon, or php-fpm (master and workers).
    const fpmPids = (): number[] => (pool.pid ? [pool.pid, ...childPids(pool.pid)] : []);
    const cpu = (): { daemon: number; php: number } => ({ daemon: cpuSeconds(wsfpm.child.pid), php: fpmPids().reduce((s, p) => s + cpuSeconds(p), 0) });
    const cpu0 = cpu();
    const echo = await echoLoad(url, cookies);
    const cpu1 = cpu();
    const events = echo.perSecond * SECONDS;
    for (const ws of opened.sockets) ws.terminate();

    Object.assign(results, {
      connections: N,
      held: control.connections,
      openFailed: { wsfpm: opened.failed, raw: rawOpen.failed },
      opensPerSecond: { wsfpm: opened.sockets.length / opened.seconds, raw: rawOpen.sockets.length / rawOpen.seconds },
      kibPerIdleConnection: { wsfpm: perConnection(before, after, N), raw: perConnection(rawBefore, rawAfter, N) },
      publishToAllSeconds: { wsfpm: reach, raw: rawReach },
      messageEvents: { wsfpm: echo, raw: rawEcho },
      cpuMsPerEvent: { daemon: ((cpu1.daemon - cpu0.daemon) * 1000) / events, php: ((cpu1.php - cpu0.php) * 1000) / events },
    });
    console.log(JSON.stringify(results, null, 2));
  } finally {
    await stopAllChildren();
    await pool.stop();
  }
  if (PROFILE_DIR) {
    for (const f of readdirSync(PROFILE_DIR).filter((n) => n.endsWith('.cpuprofile'))) console.log(formatProfile(summarizeProfile(path.join(PROFILE_DIR, f), 30)));
  }
}

await main();
