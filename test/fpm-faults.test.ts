/**
 * php-fpm missing, saturated, silent, restarted; and php-fpm over TCP.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { open, refusal, startDaemon, startPool, type Harness } from './helpers/harness.ts';
import type { FpmPool } from '../src/fpm/pool.ts';
import { PoolGate } from '../src/fpm/status.ts';
import type { Log } from '../src/log.ts';

describe('php-fpm unreachable', () => {
  let h: Omit<Harness, 'pool'>;
  before(async () => {
    const fakePool = { socket: '/nonexistent/wsfpm-test.sock' } as FpmPool;
    h = await startDaemon(fakePool);
  });
  after(async () => h?.close());

  it('answers 502 and logs one line naming the cause', async () => {
    const r = await refusal(h.url('/echo.php'));
    assert.equal(r.status, 502);
    const lines = h.logs.filter((l) => l.code === 'WSFPM_ERR_FPM_UNREACHABLE');
    assert.equal(lines.length, 1);
    assert.match(String(lines[0]!.detail), /ENOENT/);
  });
});

describe('pool saturated or silent', () => {
  let pool: FpmPool;
  let h: Omit<Harness, 'pool'>;
  before(async () => {
    pool = await startPool(2);
    h = await startDaemon(pool, { handshakeTimeout: '500' });
  });
  after(async () => {
    await h?.close();
    await pool?.stop();
  });

  it('answers 503 with Retry-After when every worker is busy, and serves again once one is free', async () => {
    const a = await open(h.url('/echo.php'));
    const b = await open(h.url('/echo.php'));
    const r = await refusal(h.url('/echo.php'));
    assert.equal(r.status, 503);
    assert.equal(r.headers['retry-after'], '5');
    a.ws.close();
    await a.closed;
    // The refused request was dropped from php-fpm's queue, so a worker is free again.
    const c = await open(h.url('/echo.php'));
    c.ws.send('x');
    assert.equal(await c.text(), 'x');
    c.ws.close();
    b.ws.close();
    await Promise.all([b.closed, c.closed]);
  });

  it('answers 503 when PHP never sends its headers', async () => {
    const r = await refusal(h.url('/hang.php'));
    assert.equal(r.status, 503);
    assert.ok(h.logs.some((l) => l.code === 'WSFPM_ERR_FPM_BUSY'));
  });
});

describe('php-fpm over TCP, stopped and restarted', () => {
  let pool: FpmPool;
  let bridgeServer: net.Server;
  let h: Omit<Harness, 'pool'>;
  before(async () => {
    pool = await startPool(2);
    // php-fpm listens on a unix socket here; a TCP relay in front of it exercises the tcp: client path.
    bridgeServer = net.createServer((s) => {
      const u = net.connect({ path: pool.socket });
      s.pipe(u).pipe(s);
      s.on('error', () => u.destroy());
      u.on('error', () => s.destroy());
    });
    await new Promise<void>((r) => bridgeServer.listen(0, '127.0.0.1', r));
    const port = (bridgeServer.address() as net.AddressInfo).port;
    h = await startDaemon(pool, { fpm: `tcp:127.0.0.1:${port}` });
  });
  after(async () => {
    await h?.close();
    bridgeServer?.close();
    await pool?.stop();
  });

  it('echoes through tcp:HOST:PORT', async () => {
    const c = await open(h.url('/echo.php'));
    c.ws.send('over tcp');
    assert.equal(await c.text(), 'over tcp');
    c.ws.close();
    await c.closed;
  });

  it('closes live connections with 1011 when the master stops, and serves again after a restart', async () => {
    const c = await open(h.url('/echo.php'));
    await pool.stop(0);
    assert.equal((await c.closed).code, 1011);
    const down = await refusal(h.url('/echo.php'));
    assert.equal(down.status, 502);
    await pool.restart();
    const again = await open(h.url('/echo.php'));
    again.ws.send('back');
    assert.equal(await again.text(), 'back');
    again.ws.close();
    await again.closed;
  });
});

/** A Log that keeps what it is given at warn and above. */
function recordingLog(lines: Array<Record<string, unknown>>): Log {
  const keep = (obj: object | string): void => void lines.push(typeof obj === 'string' ? { msg: obj } : { ...obj });
  const log: Log = { error: keep, warn: keep, info() {}, debug() {}, child: () => log };
  return log;
}

describe('the status gate (--fpm-status)', () => {
  let pool: FpmPool;
  before(async () => {
    pool = await startPool(3);
  });
  after(async () => pool?.stop());

  it('lets one reading serve a burst, counting its idle workers off: 3 of 8 at once are admitted, not 8', async () => {
    const logs: Array<Record<string, unknown>> = [];
    const gate = new PoolGate({ kind: 'unix', path: pool.statusSocket }, recordingLog(logs));
    const answers = await Promise.all(Array.from({ length: 8 }, () => gate.admit()));
    assert.equal(answers.filter((a) => a === null).length, 3);
    for (const a of answers.filter((x) => x !== null)) assert.equal(a!.code, 'WSFPM_ERR_POOL_FULL');
    assert.equal(logs.length, 0);
  });

  it('lets upgrades through, with one log line per reading, when the status socket cannot be read', async () => {
    const logs: Array<Record<string, unknown>> = [];
    const gate = new PoolGate({ kind: 'unix', path: '/nonexistent/wsfpm-status.sock' }, recordingLog(logs));
    const answers = await Promise.all(Array.from({ length: 5 }, () => gate.admit()));
    assert.deepEqual(answers, [null, null, null, null, null]);
    assert.equal(logs.filter((l) => l.code === 'WSFPM_ERR_FPM_STATUS').length, 1);
  });
});
