/**
 * php-fpm missing, saturated, silent, restarted; and php-fpm over TCP.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { open, refusal, startDaemon, startPool, type Harness } from './helpers/harness.ts';
import type { FpmPool } from '../src/fpm/pool.ts';

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
