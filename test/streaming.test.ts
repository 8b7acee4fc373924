/**
 * Volume and backpressure through one bound request: a slow client throttles
 * PHP, a slow PHP throttles the client, nothing is lost, and php://input's
 * spool file does not fill the disk.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, readlink, stat } from 'node:fs/promises';
import { after, before, it } from 'node:test';
import type { WebSocket as ServerSocket } from 'ws';
import { open, sleep, startDaemon, startHarness, type Harness } from './helpers/harness.ts';

const MiB = 1024 * 1024;
let h: Harness;

before(async () => {
  h = await startHarness({ handshakeTimeout: '3000' }, 4);
});
after(async () => {
  await h?.close();
});

/** Bytes the daemon holds toward clients (ws's bufferedAmount: its queue plus the socket's write buffer). */
function daemonOutbound(): number {
  let total = 0;
  for (const ws of h.daemon.app.websocketServer.clients as Set<ServerSocket>) total += ws.bufferedAmount;
  return total;
}

/** The php-fpm spool files (php://input copies) held open by the pool's workers: apparent and allocated bytes. */
async function spoolFiles(): Promise<Array<{ size: number; allocated: number }>> {
  const out: Array<{ size: number; allocated: number }> = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      if (!target.startsWith(h.pool.spoolDir + '/')) continue;
      const st = await stat(`/proc/${pid}/fd/${fd}`).catch(() => null);
      if (st) out.push({ size: st.size, allocated: st.blocks * 512 });
    }
  }
  return out;
}

it('streams 200 MiB into one PHP script while its spool file stays small (none on the side channel)', async () => {
  const c = await open(h.url('/count.php'));
  const chunk = randomBytes(MiB);
  let maxAllocated = 0;
  let maxApparent = 0;
  for (let sent = 1; sent <= 200; sent++) {
    c.ws.send(chunk, { binary: true });
    if (sent % 20 === 0) {
      c.ws.send('stats?');
      const stats = JSON.parse(await c.text(30_000)) as { bytes: number };
      assert.equal(stats.bytes, sent * MiB);
      for (const f of await spoolFiles()) {
        maxAllocated = Math.max(maxAllocated, f.allocated);
        maxApparent = Math.max(maxApparent, f.size);
      }
    }
  }
  if (process.env.WSFPM_TEST_DEBUG) console.error({ maxApparent, maxAllocated });
  if (h.daemon.sideChannel) {
    // The side channel bypasses php://input: no spool file at all.
    assert.equal(maxApparent, 0, `a spool file of ${maxApparent} bytes on the side channel`);
  } else {
    // The spool was found and PHP wrote past 100 MiB into it, yet it kept almost no blocks.
    assert.ok(maxApparent > 100 * MiB, `spool file seen with apparent size ${maxApparent}`);
    assert.ok(maxAllocated < 16 * MiB, `spool file allocated ${maxAllocated} bytes`);
  }
  c.ws.close();
  await c.closed;
});

it('a client that stops reading throttles PHP: bounded daemon memory, nothing lost', async () => {
  const n = 50_000;
  const pad = ' ' + 'x'.repeat(1000);
  const c = await open(h.url('/spam.php?pad=1000'));
  c.ws.pause();
  c.ws.send(String(n));
  let peak = 0;
  for (let i = 0; i < 20; i++) {
    await sleep(100);
    peak = Math.max(peak, daemonOutbound());
  }
  // 50 MB from PHP; highWater is 1 MiB: the daemon stops reading php-fpm instead of buffering it all.
  if (process.env.WSFPM_TEST_DEBUG) console.error({ peak });
  assert.ok(peak < 2 * h.config.highWater, `daemon held ${peak} bytes toward a client that does not read`);
  assert.ok(peak > h.config.highWater / 4, `the daemon's buffer was exercised (peak ${peak})`);
  c.ws.resume();
  for (let i = 0; i < n; i++) {
    const m = await c.text(30_000);
    if (m !== `m${i}${pad}`) assert.fail(`message ${i} was ${m.slice(0, 20)}`);
  }
  assert.deepEqual(await c.closed, { code: 1000, reason: 'done' });
});

it('a PHP script that does not read throttles the client, and gets everything later', async () => {
  const c = await open(h.url('/count.php?sleep=1500'));
  const chunk = randomBytes(MiB);
  for (let i = 0; i < 40; i++) c.ws.send(chunk, { binary: true });
  await sleep(1000);
  // The daemon stopped reading the client: most of the 40 MiB is still queued client-side.
  assert.ok(c.ws.bufferedAmount > 10 * MiB, `client still holds ${c.ws.bufferedAmount} bytes`);
  c.ws.send('stats?');
  const stats = JSON.parse(await c.text(30_000)) as { bytes: number; messages: number };
  assert.deepEqual(stats, { bytes: 40 * MiB, messages: 40 });
  c.ws.close();
  await c.closed;
});

it('a client that stops reading for --stall-timeout is closed with 1013, after what was queued for it', async () => {
  const own = await startDaemon(h.pool, { stallTimeout: '1000', messageRate: '0' });
  try {
    const c = await open(own.url('/spam.php?pad=1000'));
    c.ws.pause();
    c.ws.send('100000');
    await sleep(2500);
    assert.ok(own.logs.some((l) => l.code === 'WSFPM_ERR_SLOW_CONSUMER'), 'the stall was logged');
    c.ws.resume();
    const closed = await c.closed;
    assert.equal(closed.code, 1013);
    // What was queued before the close arrived, in order, and nothing after it.
    const got = c.messages.map((m) => m.data.toString('utf8').split(' ')[0]);
    assert.ok(got.length > 0 && got.length < 100_000, `${got.length} messages`);
    assert.deepEqual(got, Array.from({ length: got.length }, (_, i) => `m${i}`));
  } finally {
    await own.close();
  }
});
