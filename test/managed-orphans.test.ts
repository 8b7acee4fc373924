/**
 * Regression (issue 13): a daemon killed by a signal (SIGKILL: no exit
 * handler runs) left its managed php-fpm master and workers running,
 * reparented to init and still serving the pool's socket; and when the same
 * signal killed the master too, its workers were left with no one to stop
 * them. Here a real `wsfpm --fpm managed` runs as a child process and is
 * killed; /proc must then show none of the pool's processes.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { FIXTURES } from './helpers/harness.ts';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'wsfpm.js');
const WORKERS = 3;
let tmp: string;
/** What a killed daemon cannot clean up itself: its pool's dirs, and whatever a failing test left running. */
const leftovers: Array<() => Promise<unknown>> = [];

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'wsfpm-orphans-'));
});
after(async () => {
  for (const f of leftovers) await f();
  await rm(tmp, { recursive: true, force: true });
});

interface Proc {
  pid: number;
  ppid: number;
  pgrp: number;
  state: string;
  /** Clock ticks after boot: tells a reused pid from the process it was. */
  start: string;
}

/** /proc/PID/stat; null when there is no such process. */
async function proc(pid: number): Promise<Proc | null> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (text === null) return null;
  // After the command name, which may hold spaces and parentheses: state ppid pgrp … starttime (field 22).
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { pid, state: f[0]!, ppid: Number(f[1]), pgrp: Number(f[2]), start: f[19]! };
}

async function allProcs(): Promise<Proc[]> {
  const pids = (await readdir('/proc')).filter((n) => /^\d+$/.test(n)).map(Number);
  return (await Promise.all(pids.map(proc))).filter((p): p is Proc => p !== null);
}

/** Still running: the same process (not a reused pid) and not a zombie waiting to be reaped. */
async function alive(p: Proc): Promise<boolean> {
  const now = await proc(p.pid);
  return now !== null && now.start === p.start && now.state !== 'Z';
}

/** Polls until none of `procs` runs; returns those still running after `ms`. */
async function survivorsAfter(procs: Proc[], ms: number): Promise<Proc[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const left: Proc[] = [];
    for (const p of procs) if (await alive(p)) left.push(p);
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `wsfpm --fpm managed` in a child process, once it listens; with its php-fpm master and workers as /proc shows them. */
async function startManaged(): Promise<{ daemon: ChildProcess; master: Proc; workers: Proc[] }> {
  const daemon = spawn(process.execPath, [BIN, '--fpm', 'managed', '--port', '0', '--control', '', '--root', FIXTURES, '--max-connections', String(WORKERS)], {
    cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '' },
  });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const seen = (c: Buffer): void => {
      out += c.toString();
      if (/"address":"http:\/\//.test(out)) resolve();
    };
    daemon.stdout!.on('data', seen);
    daemon.stderr!.on('data', seen);
    daemon.once('exit', (code) => reject(new Error(`wsfpm exited ${code} during start-up: ${out}`)));
  });
  const procs = await allProcs();
  const master = procs.find((p) => p.ppid === daemon.pid && p.pgrp === p.pid);
  assert.ok(master, `no php-fpm master among the daemon's children: ${out}`);
  const cmdline = (await readFile(`/proc/${master.pid}/cmdline`, 'utf8')).split('\0');
  assert.match(cmdline[0]!, /php-fpm/);
  const conf = cmdline[cmdline.indexOf('-y') + 1]!;
  leftovers.push(async () => {
    daemon.kill('SIGKILL');
    try {
      process.kill(-master.pid, 'SIGKILL');
    } catch {
      // Gone, as it should be.
    }
    await rm(path.dirname(conf), { recursive: true, force: true });
  });
  const workers = procs.filter((p) => p.ppid === master.pid);
  assert.ok(workers.length >= WORKERS, `pm static: a worker per allowed connection at least, not ${workers.length}`);
  return { daemon, master, workers };
}

async function killed(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise((r) => child.once('exit', r));
}

describe('a managed php-fpm does not outlive its daemon', () => {
  it('a SIGKILLed daemon takes its php-fpm master and every worker with it', async () => {
    const { daemon, master, workers } = await startManaged();
    daemon.kill('SIGKILL');
    await killed(daemon);
    const left = await survivorsAfter([master, ...workers], 10_000);
    assert.deepEqual(left.map((p) => p.pid), [], 'php-fpm processes still running after their daemon was killed');
  });

  it('a signal that kills the daemon and the master together leaves no worker behind', async () => {
    const { daemon, master, workers } = await startManaged();
    process.kill(master.pid, 'SIGKILL');
    daemon.kill('SIGKILL');
    await killed(daemon);
    const left = await survivorsAfter([master, ...workers], 10_000);
    assert.deepEqual(left.map((p) => p.pid), [], 'workers still running after their daemon and master were killed');
  });
});
