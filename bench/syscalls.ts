/**
 * `node --import tsx bench/syscalls.ts [SIZE] [IN_FLIGHT]` (default 32 1),
 * or `… bench/syscalls.ts connect`: system calls per connection (open, one
 * 32 B echo, close) instead of per echo.
 *
 * Per echo:
 * system calls per echo of the wsfpm daemon and of the php-fpm workers (on
 * the side channel, then on STDIN/STDOUT) and of the raw ws server, counted with `strace -c -f` over 1,000 echoes on one
 * connection, IN_FLIGHT at a time. Needs strace (and ptrace rights). Not part
 * of `npm run bench`: it backs the profile findings in docs/performance.md.
 */
import { spawn } from 'node:child_process';
import { childPids } from './lib/proc.ts';
import { startPool, startRaw, startWsfpm, stopAllPools } from './lib/systems.ts';
import { stopAllChildren } from './lib/child.ts';
import { Conversation, textPayload } from './lib/ws.ts';

const connectMode = process.argv[2] === 'connect';
const size = connectMode ? 32 : Number(process.argv[2] ?? 32);
const inFlight = Number(process.argv[3] ?? 1);
const COUNT = 1000;

/** strace -c's table → "name count/n, …", busiest first. */
function perUnit(out: string, n: number): string {
  const rows = out.split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f.length >= 5 && /^\d/.test(f[3] ?? '') && f[f.length - 1] !== 'total');
  const total = rows.reduce((a, f) => a + Number(f[3]), 0);
  return `${(total / n).toFixed(1)} (${rows.map((f) => `${f[f.length - 1]} ${(Number(f[3]) / n).toFixed(2)}`).join(', ')})`;
}

const CONNECTS = 300;

/** Connections opened one after another, each with one echo, while strace counts `pids`' calls. */
async function countConnects(label: string, pids: () => number[], url: string): Promise<void> {
  const payload = textPayload(size);
  const once = async (): Promise<void> => {
    const conv = await Conversation.open(url);
    conv.ws.send(payload);
    await conv.next();
    await conv.close();
  };
  for (let i = 0; i < 20; i++) await once();
  const strace = spawn('strace', ['-c', '-f', ...pids().flatMap((p) => ['-p', String(p)])], { stdio: ['ignore', 'ignore', 'pipe'] });
  let out = '';
  strace.stderr.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise((r) => setTimeout(r, 1000));
  for (let i = 0; i < CONNECTS; i++) await once();
  // The last close's calls.
  await new Promise((r) => setTimeout(r, 300));
  strace.kill('SIGINT');
  await new Promise((r) => strace.once('exit', r));
  console.log(`${label.padEnd(16)} per connection: ${perUnit(out, CONNECTS)}`);
}

async function count(label: string, pids: () => number[], url: string): Promise<void> {
  if (connectMode) return countConnects(label, pids, url);
  const conv = await Conversation.open(url);
  const payload = textPayload(size);
  for (let i = 0; i < 50; i++) {
    conv.ws.send(payload);
    await conv.next();
  }
  const strace = spawn('strace', ['-c', '-f', ...pids().flatMap((p) => ['-p', String(p)])], { stdio: ['ignore', 'ignore', 'pipe'] });
  let out = '';
  strace.stderr.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise((r) => setTimeout(r, 1000));
  for (let i = 0; i < COUNT / inFlight; i++) {
    for (let j = 0; j < inFlight; j++) conv.ws.send(payload);
    for (let j = 0; j < inFlight; j++) await conv.next();
  }
  strace.kill('SIGINT');
  await new Promise((r) => strace.once('exit', r));
  await conv.close();
  console.log(`${label.padEnd(16)} per echo: ${perUnit(out, COUNT)}`);
}

try {
  const pool = await startPool(4);
  // The same echo both ways: frames on the side channel (the default), and on STDIN/STDOUT.
  const side = await startWsfpm(pool, { maxConnections: 4 });
  const stdio = await startWsfpm(pool, { maxConnections: 4, flags: { sideChannel: 'off' } });
  const raw = await startRaw();
  console.log(connectMode ? `${CONNECTS} connections one after another, one 32 B echo each` : `${COUNT} echoes of ${size} B, ${inFlight} in flight, one connection`);
  await count('wsfpm daemon', () => [side.child.pid], side.url('echo'));
  await count('php-fpm workers', () => childPids(pool.pid!), side.url('echo'));
  await count('daemon, stdio', () => [stdio.child.pid], stdio.url('echo'));
  await count('workers, stdio', () => childPids(pool.pid!), stdio.url('echo'));
  await count('raw ws server', () => [raw.child.pid], raw.url('echo'));
} finally {
  await stopAllChildren();
  await stopAllPools();
}
