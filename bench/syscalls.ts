/**
 * `node --import tsx bench/syscalls.ts [SIZE] [IN_FLIGHT]` (default 32 1):
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

const size = Number(process.argv[2] ?? 32);
const inFlight = Number(process.argv[3] ?? 1);
const COUNT = 1000;

async function count(label: string, pids: () => number[], url: string): Promise<void> {
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
  const rows = out.split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f.length >= 5 && /^\d/.test(f[3] ?? ''));
  const per = rows.map((f) => `${f[f.length - 1]} ${(Number(f[3]) / COUNT).toFixed(2)}`).join(', ');
  console.log(`${label.padEnd(16)} per echo: ${per}`);
}

try {
  const pool = await startPool(4);
  // The same echo both ways: frames on the side channel (the default), and on STDIN/STDOUT.
  const side = await startWsfpm(pool, { maxConnections: 4 });
  const stdio = await startWsfpm(pool, { maxConnections: 4, flags: { sideChannel: 'off' } });
  const raw = await startRaw();
  console.log(`${COUNT} echoes of ${size} B, ${inFlight} in flight, one connection`);
  await count('wsfpm daemon', () => [side.child.pid], side.url('echo'));
  await count('php-fpm workers', () => childPids(pool.pid!), side.url('echo'));
  await count('daemon, stdio', () => [stdio.child.pid], stdio.url('echo'));
  await count('workers, stdio', () => childPids(pool.pid!), stdio.url('echo'));
  await count('raw ws server', () => [raw.child.pid], raw.url('echo'));
} finally {
  await stopAllChildren();
  await stopAllPools();
}
