/**
 * Several php-fpm masters: `--fpm managed` starts one per
 * --fpm-master-workers workers, and `--fpm a,b` spreads upgrades over the
 * site's own pools (with --fpm-status, a full one is passed over). Real
 * php-fpm masters throughout; which master holds a connection is read from
 * the worker's parent pid.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { buildConfig } from '../src/config.ts';
import { createDaemon, type Daemon } from '../src/server/app.ts';
import type { FpmPool } from '../src/fpm/pool.ts';
import { FIXTURES, open, refusal, sleep, startDaemon, startPool, type Client, type Harness } from './helpers/harness.ts';

async function parentOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // The fields after the command name, which is in parentheses and may hold spaces.
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

/** Opens pid.php and returns the connection with the pid of the php-fpm master its worker belongs to. */
async function openOnMaster(url: string): Promise<{ c: Client; master: number }> {
  const c = await open(url);
  const worker = Number(await c.text());
  return { c, master: await parentOf(worker) };
}

async function echoes(c: Client, text: string): Promise<void> {
  c.ws.send(text);
  assert.equal(await c.text(), text);
}

describe('--fpm managed with several masters', () => {
  let daemon: Daemon;
  let port: number;
  const logs: Array<Record<string, unknown>> = [];
  const url = (p: string): string => `ws://127.0.0.1:${port}${p}`;

  before(async () => {
    // 6 connections → 8 workers (10 % and one of headroom) → two masters of 4, the first with the event worker besides.
    const config = buildConfig({ root: FIXTURES, fpm: 'managed', maxConnections: '6', fpmMasterWorkers: '4', eventConcurrency: '1', handshakeTimeout: '5000', logLevel: 'info' }, {});
    daemon = await createDaemon(config, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
    await daemon.app.listen({ host: '127.0.0.1', port: 0 });
    port = (daemon.app.server.address() as { port: number }).port;
  });
  after(async () => daemon?.app.close());

  it('starts one master per --fpm-master-workers workers and spreads connections evenly over them', async () => {
    assert.equal(daemon.masters.length, 2);
    const pids = daemon.masters.map((m) => m.pool.pid!);
    const opened: Array<{ c: Client; master: number }> = [];
    for (let i = 0; i < 6; i++) opened.push(await openOnMaster(url('/pid.php')));
    const perMaster = pids.map((pid) => opened.filter((o) => o.master === pid).length);
    assert.deepEqual(perMaster, [3, 3]);
    for (const o of opened) await echoes(o.c, 'hi');
    for (const o of opened) o.c.ws.close();
    await Promise.all(opened.map((o) => o.c.closed));
  });

  it('closes only the dead master\'s connections with 1012, sends new ones to the other meanwhile, and uses it again once restarted', async () => {
    const [first, second] = daemon.masters;
    const opened: Array<{ c: Client; master: number }> = [];
    for (let i = 0; i < 4; i++) opened.push(await openOnMaster(url('/pid.php')));
    const onSecond = opened.filter((o) => o.master === second!.pool.pid);
    const onFirst = opened.filter((o) => o.master === first!.pool.pid);
    assert.equal(onSecond.length, 2);
    const dead = second!.pool.pid!;
    process.kill(dead, 'SIGKILL');
    for (const o of onSecond) assert.equal((await o.c.closed).code, 1012);
    for (const o of onFirst) await echoes(o.c, 'still here');
    // While the second restarts, upgrades go to the first (2 held of its 4 workers).
    const during = await openOnMaster(url('/pid.php'));
    assert.equal(during.master, first!.pool.pid);
    let back = false;
    for (let i = 0; i < 50 && !back; i++) {
      await sleep(200);
      back = second!.pool.pid !== dead && logs.some((l) => l.msg === 'managed php-fpm restarted');
    }
    assert.ok(back, 'the second master was restarted');
    const after = await openOnMaster(url('/pid.php'));
    assert.equal(after.master, second!.pool.pid, 'the restarted master, holding none, takes the next connection');
    await echoes(after.c, 'again');
    for (const o of [...onFirst, during, after]) o.c.ws.close();
    await Promise.all([...onFirst, during, after].map((o) => o.c.closed));
  });

  it('stops every master with the daemon', async () => {
    const pids = daemon.masters.map((m) => m.pool.pid!);
    await daemon.app.close();
    await sleep(100);
    for (const pid of pids) assert.throws(() => process.kill(pid, 0), /ESRCH/);
  });
});

describe('--fpm a,b: the site\'s own pools, with their status listeners', () => {
  let a: FpmPool;
  let b: FpmPool;
  let h: Omit<Harness, 'pool'>;

  before(async () => {
    a = await startPool(2);
    b = await startPool(2);
    h = await startDaemon(a, { fpm: `unix:${a.socket},unix:${b.socket}`, fpmStatus: `unix:${a.statusSocket},unix:${b.statusSocket}`, handshakeTimeout: '2000' });
  });
  after(async () => {
    await h?.close();
    await a?.stop();
    await b?.stop();
  });

  it('takes turns while both have idle workers, passes a full pool over, and answers 503 only when both are full', async () => {
    const opened: Array<{ c: Client; master: number }> = [];
    for (let i = 0; i < 4; i++) opened.push(await openOnMaster(h.url('/pid.php')));
    assert.deepEqual([a.pid, b.pid].map((pid) => opened.filter((o) => o.master === pid).length), [2, 2]);
    const r = await refusal(h.url('/pid.php'));
    assert.equal(r.status, 503);
    assert.equal(r.headers['x-wsfpm-error'], 'WSFPM_ERR_POOL_FULL');
    // One of b's connections ends: the next upgrade finds b's idle worker, though a comes first in the list.
    const onB = opened.find((o) => o.master === b.pid)!;
    onB.c.ws.close();
    await onB.c.closed;
    let next: { c: Client; master: number } | null = null;
    for (let i = 0; i < 20 && !next; i++) {
      await sleep(100);
      next = await openOnMaster(h.url('/pid.php')).catch(() => null);
    }
    assert.equal(next?.master, b.pid);
    for (const o of [...opened.filter((x) => x !== onB), next!]) o.c.ws.close();
    await Promise.all([...opened.filter((x) => x !== onB), next!].map((o) => o.c.closed));
  });

  it('a master counts only what it holds: refusals (no script) and clients gone before PHP leave every count at 0', async () => {
    const held = async (): Promise<number[]> => {
      const text = await (await fetch(`http://${h.daemon.control!.address.replace(/^tcp:/, '')}/metrics`)).text();
      return [a, b].map((p) => Number(text.match(new RegExp(`wsfpm_fpm_connections\\{fpm="unix:${p.socket.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"\\} (\\d+)`))?.[1]));
    };
    for (let i = 0; i < 4; i++) assert.equal((await refusal(h.url('/no-such-script.php'))).status, 404);
    // Clients that send the upgrade and leave at once, while the status is read (the last reading has gone stale) or PHP is asked.
    await sleep(300);
    const { default: net } = await import('node:net');
    const port = Number(new URL(h.url('/')).port);
    await Promise.all(Array.from({ length: 6 }, () => new Promise<void>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.write(`GET /pid.php HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
        setImmediate(() => s.destroy());
      });
      s.on('close', () => resolve());
      s.on('error', () => undefined);
    })));
    let counts: number[] = [];
    for (let i = 0; i < 30; i++) {
      counts = await held();
      if (counts.every((n) => n === 0)) break;
      await sleep(100);
    }
    assert.deepEqual(counts, [0, 0]);
    // And both masters still take connections.
    const both = [await openOnMaster(h.url('/pid.php')), await openOnMaster(h.url('/pid.php'))];
    assert.deepEqual(both.map((o) => o.master).sort(), [a.pid, b.pid].sort());
    assert.deepEqual(await held(), [1, 1]);
    for (const o of both) o.c.ws.close();
    await Promise.all(both.map((o) => o.c.closed));
  });
});
