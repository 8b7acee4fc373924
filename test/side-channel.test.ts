/**
 * The side channel (issue 11): a bound script's frames on a private unix
 * socket instead of STDIN/STDOUT. Proven against a real php-fpm: the channel
 * is used when offered, every kind of wrong claim is refused and logged, the
 * script falls back to STDIN/STDOUT whenever it cannot reach the channel,
 * and `stream()`/`receive($timeout)` work on both paths.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, cp, mkdtemp, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { FpmPool } from '../src/fpm/pool.ts';
import { FIXTURES, open, refusal, startDaemon, startHarness, type Harness } from './helpers/harness.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const isRoot = process.getuid?.() === 0;

type Log = Record<string, unknown>;
const tokenRefusals = (logs: Log[]): Log[] => logs.filter((l) => l.code === 'WSFPM_ERR_CHANNEL_TOKEN');

async function until(what: string, f: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!f()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Connects to the listener, sends `bytes`, and reports what came back before the daemon closed it. */
async function claim(address: string, bytes: Buffer | null): Promise<{ reply: Buffer; closedAfterMs: number }> {
  const started = Date.now();
  const socket = net.connect(address.replace(/^unix:/, ''));
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  if (bytes) socket.write(bytes);
  await new Promise<void>((resolve) => {
    socket.once('close', () => resolve());
    socket.on('error', () => {});
  });
  return { reply: Buffer.concat(chunks), closedAfterMs: Date.now() - started };
}

/** side-timeout.php: a "timeout" while the client is quiet, then the echo of what it sends. */
async function timeoutThenEcho(h: Harness, side: boolean): Promise<void> {
  const c = await open(h.url('/side-timeout.php'));
  assert.deepEqual(JSON.parse(await c.text()), { side });
  assert.equal(await c.text(), 'timeout');
  c.ws.send('x');
  // Timeouts may come before the echo; the echo must come.
  let got = await c.text();
  while (got === 'timeout') got = await c.text();
  assert.equal(got, 'echo: x');
  c.ws.close();
  await c.closed;
}

describe('side channel, offered', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ sideChannel: 'auto' });
  });
  after(async () => h.close());

  it('carries the frames and logs no warning', async () => {
    const c = await open(h.url('/side.php'));
    assert.deepEqual(JSON.parse(await c.text()), { side: true });
    c.ws.send('hello');
    assert.equal(await c.text(), 'hello');
    const big = randomBytes(200_000);
    c.ws.send(big);
    const back = await c.next();
    assert.equal(back.binary, true);
    assert.ok(back.data.equals(big), 'a 200 KB binary message comes back intact');
    c.ws.close(1000);
    assert.equal((await c.closed).code, 1000);
    assert.deepEqual(h.logs.filter((l) => (l.level as number) >= 40), []);
  });

  it('offers a 128-bit token and a unix address in the CGI params', async () => {
    const c = await open(h.url('/side-token.php'));
    const [token, address] = (await c.text()).split(' ');
    assert.match(token!, /^[0-9a-f]{32}$/);
    assert.match(address!, /^unix:\/.+\/ch\.sock$/);
    c.ws.close();
    await c.closed;
  });

  it('refuses a token that was already claimed, and the real connection goes on', async () => {
    const c = await open(h.url('/side-token.php'));
    const [token, address] = (await c.text()).split(' ');
    const before = tokenRefusals(h.logs).length;
    const { reply } = await claim(address!, Buffer.from(token!, 'hex'));
    assert.equal(reply.length, 0, 'no ack for a used token');
    await until('the refusal log line', () => tokenRefusals(h.logs).length > before);
    assert.match(String(tokenRefusals(h.logs).at(-1)!.detail), /unknown, used or withdrawn/);
    c.ws.send('still mine');
    assert.equal(await c.text(), 'still mine');
    c.ws.close();
    await c.closed;
  });

  it('refuses an unknown token and bytes sent after the token', async () => {
    const c = await open(h.url('/side-token.php'));
    const [, address] = (await c.text()).split(' ');
    const before = tokenRefusals(h.logs).length;
    assert.equal((await claim(address!, randomBytes(16))).reply.length, 0);
    assert.equal((await claim(address!, Buffer.concat([randomBytes(16), Buffer.from('frame')]))).reply.length, 0);
    await until('two refusal log lines', () => tokenRefusals(h.logs).length >= before + 2);
    const details = tokenRefusals(h.logs).slice(before).map((l) => String(l.detail));
    assert.ok(details.some((d) => /unknown/.test(d)), details.join('; '));
    assert.ok(details.some((d) => /bytes after the token/.test(d)), details.join('; '));
    c.ws.close();
    await c.closed;
  });

  it('withdraws the offer of an upgrade PHP refused', async () => {
    const r = await refusal(h.url('/side-token.php?refuse=1'));
    assert.equal(r.status, 403);
    const token = r.body.trim();
    assert.match(token, /^[0-9a-f]{32}$/);
    const address = h.daemon.sideChannel!.address;
    const before = tokenRefusals(h.logs).length;
    assert.equal((await claim(address, Buffer.from(token, 'hex'))).reply.length, 0);
    await until('the refusal log line', () => tokenRefusals(h.logs).length > before);
    assert.equal(h.daemon.sideChannel!.pending, 0, 'no offer is left behind');
  });

  it('closes a connection that presents no token within 2 s', async () => {
    const address = h.daemon.sideChannel!.address;
    const before = tokenRefusals(h.logs).length;
    const { reply, closedAfterMs } = await claim(address, null);
    assert.equal(reply.length, 0);
    assert.ok(closedAfterMs >= 1_900 && closedAfterMs < 5_000, `closed after ${closedAfterMs} ms`);
    assert.match(String(tokenRefusals(h.logs).slice(before)[0]?.detail), /no token within 2000 ms/);
  });

  it('leaves no offer behind for an events-mode connection, which never claims one', async () => {
    const c = await open(h.url('/ev-echo.php'));
    c.ws.send('hi');
    await c.next();
    assert.equal(h.daemon.sideChannel!.pending, 0);
    c.ws.close();
    await c.closed;
  });

  it('keeps its listener in a 0750 directory with a 0660 socket', async () => {
    const dir = h.daemon.sideChannel!.dir;
    assert.equal((await stat(dir)).mode & 0o777, 0o750);
    assert.equal((await stat(h.daemon.sideChannel!.address)).mode & 0o777, 0o660);
  });

  it('receive($timeout) times out and still delivers', async () => timeoutThenEcho(h, true));

  it('stream() can be select()ed with a child process pipe', async () => {
    const c = await open(h.url('/side-select.php'));
    c.ws.send('hello');
    const got: string[] = [];
    while (!got.includes('child done')) got.push(await c.text());
    assert.ok(got.includes('echo: hello'), got.join(', '));
    assert.deepEqual(got.filter((m) => m.startsWith('child')), ['child: one', 'child: two', 'child done']);
    c.ws.close();
    await c.closed;
  });
});

describe('side channel, off', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ sideChannel: 'off' });
  });
  after(async () => h.close());

  it('opens no listener, and the script uses STDIN/STDOUT', async () => {
    assert.equal(h.daemon.sideChannel, null);
    const c = await open(h.url('/side.php'));
    assert.deepEqual(JSON.parse(await c.text()), { side: false });
    c.ws.send('hello');
    assert.equal(await c.text(), 'hello');
    c.ws.close();
    await c.closed;
  });

  it('receive($timeout) works through the daemon', async () => timeoutThenEcho(h, false));

  it('stream() without a channel is a clear error, a 1011 to the client', async () => {
    const c = await open(h.url('/side-select.php'));
    const { code } = await c.closed;
    assert.equal(code, 1011);
    await until('the PHP error line', () => h.logs.some((l) => /stream\(\)/.test(JSON.stringify(l))));
  });
});

describe('side channel, pool user without access', { skip: !isRoot && 'needs root to run the pool as www-data' }, () => {
  let www = '';
  let pool: FpmPool;
  before(async () => {
    // The checkout may be below a directory www-data cannot enter: give the pool a copy.
    www = await mkdtemp(path.join(os.tmpdir(), 'wsfpm-side-www-'));
    await chmod(www, 0o755);
    await cp(FIXTURES, path.join(www, 'test', 'fixtures', 'www'), { recursive: true });
    await cp(path.join(REPO, 'php'), path.join(www, 'php'), { recursive: true });
    pool = await FpmPool.start({ maxChildren: 2, user: 'www-data' });
  });
  after(async () => {
    await pool.stop();
    await rm(www, { recursive: true, force: true });
  });

  it('with --side-channel-group www-data, www-data reaches it', async () => {
    const d = await startDaemon(pool, { root: path.join(www, 'test', 'fixtures', 'www'), sideChannel: 'auto', sideChannelGroup: 'www-data' });
    try {
      const c = await open(d.url('/side.php'));
      assert.deepEqual(JSON.parse(await c.text()), { side: true });
      c.ws.send('hi');
      assert.equal(await c.text(), 'hi');
      c.ws.close();
      await c.closed;
    } finally {
      await d.close();
    }
  });

  it('falls back to STDIN/STDOUT with one PHP log line when the directory keeps it out', async () => {
    // The pool's socket is root's (the master's), so the directory stays root's too.
    const d = await startDaemon(pool, { root: path.join(www, 'test', 'fixtures', 'www'), sideChannel: 'auto' });
    try {
      const c = await open(d.url('/side.php'));
      assert.deepEqual(JSON.parse(await c.text()), { side: false });
      c.ws.send('hi');
      assert.equal(await c.text(), 'hi');
      c.ws.close();
      await c.closed;
      await until('the fallback line', () => d.logs.some((l) => /side channel .* unreachable/.test(JSON.stringify(l))));
      assert.equal(d.daemon.sideChannel!.pending, 0);
    } finally {
      await d.close();
    }
  });
});
