/**
 * The core promise against a real php-fpm master: each websocket is one PHP
 * request, messages flow both ways, PHP accepts or refuses, close codes
 * travel both directions, and PHP's failures become 1011 without harming the
 * daemon.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fcgiFetch } from '../src/fastcgi/fetch.ts';
import { FIXTURES, open, refusal, startHarness, withTimeout, sleep, Client, type Harness } from './helpers/harness.ts';

let h: Harness;
let tmp: string;

before(async () => {
  // No message rate limit here: these tests stream at full speed (the limit has its own test in faults).
  h = await startHarness({ pingInterval: '300', handshakeTimeout: '2000', messageRate: '0' }, 60);
  tmp = await mkdtemp(path.join(os.tmpdir(), 'wsfpm-core-'));
});

after(async () => {
  await h?.close();
  await rm(tmp, { recursive: true, force: true });
});

async function waitForFile(file: string, ms = 5000): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const text = await readFile(file, 'utf8').catch(() => null);
    if (text) return text;
    if (Date.now() > deadline) throw new Error(`${file} was not written within ${ms} ms`);
    await sleep(25);
  }
}

/** A fresh echo after a failure proves the daemon still serves. */
async function assertStillServes(): Promise<void> {
  const c = await open(h.url('/echo.php'));
  c.ws.send('still here');
  assert.equal(await c.text(), 'still here');
  c.ws.close();
  await c.closed;
}

describe('echo through a bound PHP request', () => {
  for (const size of [0, 1, 64 * 1024, 1024 * 1024]) {
    it(`echoes ${size} bytes as text and as binary, byte for byte`, async () => {
      const c = await open(h.url('/echo.php'));
      const bin = randomBytes(size);
      const text = 'ä'.repeat(Math.floor(size / 2)) + (size % 2 ? 'x' : '');
      c.ws.send(bin, { binary: true });
      c.ws.send(text);
      const a = await c.next();
      assert.equal(a.binary, true);
      assert.ok(a.data.equals(bin), 'binary payload differs');
      const b = await c.next();
      assert.equal(b.binary, false);
      assert.equal(b.data.toString('utf8'), text);
      c.ws.close(1000);
      assert.equal((await c.closed).code, 1000);
    });
  }

  it('keeps 1,000 messages in order on one connection', async () => {
    const c = await open(h.url('/echo.php'));
    for (let i = 0; i < 1000; i++) c.ws.send(`m${i}`);
    for (let i = 0; i < 1000; i++) assert.equal(await c.text(), `m${i}`);
    c.ws.close();
    await c.closed;
  });

  it('serves 50 concurrent connections, each with its own worker', async () => {
    const clients = await Promise.all(Array.from({ length: 50 }, () => open(h.url('/pid.php'))));
    const pids = await Promise.all(clients.map((c) => c.text()));
    assert.equal(new Set(pids).size, 50, 'each connection is bound to its own php-fpm worker');
    await Promise.all(clients.map(async (c, i) => {
      c.ws.send(`hello ${i}`);
      assert.equal(await c.text(), `hello ${i}`);
    }));
    for (const c of clients) c.ws.close();
    await Promise.all(clients.map((c) => c.closed));
  });

  it('lets PHP push many messages before reading any (the two directions are independent)', async () => {
    const c = await open(h.url('/spam.php'));
    c.ws.send('2000');
    for (let i = 0; i < 2000; i++) assert.equal(await c.text(), `m${i}`);
    const closed = await c.closed;
    assert.deepEqual(closed, { code: 1000, reason: 'done' });
  });
});

describe('CGI environment', () => {
  it('gives PHP the superglobals a page would have under Apache', async () => {
    const c = await open(h.url('/server-info.php/extra/path?a=1&b=two'), {
      headers: { Cookie: 'x=1; y=2', 'X-Custom': 'hi', 'Accept-Encoding': 'gzip', X_Forwarded_For: '6.6.6.6' },
    });
    const info = JSON.parse(await c.text()) as Record<string, unknown>;
    assert.equal(info.REQUEST_URI, '/server-info.php/extra/path?a=1&b=two');
    assert.equal(info.QUERY_STRING, 'a=1&b=two');
    assert.deepEqual(info._GET, { a: '1', b: 'two' });
    assert.deepEqual(info._COOKIE, { x: '1', y: '2' });
    assert.equal(info.REMOTE_ADDR, '127.0.0.1');
    assert.equal(info.REQUEST_METHOD, 'GET');
    assert.equal(info.SCRIPT_NAME, '/server-info.php');
    assert.equal(info.PATH_INFO, '/extra/path');
    assert.equal(info.SCRIPT_FILENAME, path.join(FIXTURES, 'server-info.php'));
    assert.equal(info.DOCUMENT_ROOT, FIXTURES);
    assert.equal(info.SERVER_NAME, '127.0.0.1');
    assert.equal(info.SERVER_PORT, String(h.port));
    assert.equal(info.HTTP_HOST, `127.0.0.1:${h.port}`);
    assert.equal(info.HTTP_X_CUSTOM, 'hi');
    assert.equal(info.GATEWAY_INTERFACE, 'CGI/1.1');
    assert.equal(info.HTTPS, null);
    assert.equal(info.HTTP_X_FORWARDED_FOR, null, 'a header name with _ must not become HTTP_X_FORWARDED_FOR');
    assert.equal(info.CONTENT_TYPE, null);
    assert.equal(info.HTTP_ACCEPT_ENCODING, null, 'Accept-Encoding would let zlib wrap the frames');
    assert.match(String(info.WSFPM_CONNECTION_ID), /^[0-9a-f]{32}$/);
    assert.equal(info.id, info.WSFPM_CONNECTION_ID);
    c.ws.close();
    await c.closed;
  });

  it('reads the PHP session from the cookie, and a page of the same session is not blocked meanwhile', async () => {
    const fpm = { kind: 'unix' as const, path: h.pool.socket };
    const page = (query: string, cookie?: string) => fcgiFetch(fpm, {
      REQUEST_METHOD: 'GET', SCRIPT_FILENAME: path.join(FIXTURES, 'session-page.php'), SCRIPT_NAME: '/session-page.php',
      REQUEST_URI: `/session-page.php?${query}`, QUERY_STRING: query, SERVER_NAME: 'localhost', SERVER_PORT: '80', REMOTE_ADDR: '127.0.0.1',
      ...(cookie ? { HTTP_COOKIE: cookie } : {}),
    });
    const first = await page('name=alice');
    const setCookie = first.head.headers.find(([n]) => n.toLowerCase() === 'set-cookie')?.[1] ?? '';
    const cookie = setCookie.split(';')[0]!;
    assert.match(cookie, /^PHPSESSID=\w+$/);

    const denied = await refusal(h.url('/session-ws.php'));
    assert.equal(denied.status, 401);
    assert.equal(denied.body, 'no session');

    const c = await open(h.url('/session-ws.php'), { headers: { Cookie: cookie } });
    assert.equal(await c.text(), 'hello alice');
    // The websocket script still runs; the session lock must already be released.
    const again = await withTimeout(page('', cookie), 3000, 'page request of the same session while its websocket is open');
    assert.equal(again.body.toString(), cookie.split('=')[1]);
    c.ws.close();
    await c.closed;
  });
});

describe('PHP accepts or refuses', () => {
  it('returns PHP\'s refusal as the HTTP response, status, headers and body', async () => {
    const r = await refusal(h.url('/reject.php'));
    assert.equal(r.status, 403);
    assert.equal(r.headers['x-reason'], 'test');
    assert.equal(r.body, 'go away');
  });

  it('leaves out a header of PHP\'s refusal that HTTP forbids, keeps the rest, and logs it', async () => {
    const before = h.logs.length;
    const res = await rawUpgrade(h.port, '/reject-bad-header.php');
    assert.match(res, /^HTTP\/1\.1 403 Forbidden\r\n/);
    assert.match(res, /\r\nX-Good: yes\r\n/i);
    assert.match(res, /\r\nSet-Cookie: a=1\r\n/i);
    assert.match(res, /\r\nSet-Cookie: b=2\r\n/i);
    assert.doesNotMatch(res, /X-Bad/i);
    assert.match(res, /\r\nconnection: close\r\n/i);
    const line = h.logs.slice(before).find((l) => l.code === 'WSFPM_ERR_PHP_HEADERS');
    assert.deepEqual(line?.dropped, ['X-Bad']);
    await assertStillServes();
  });

  it('an interim status from PHP (103) is answered 502, not passed on as the final answer', async () => {
    const before = h.logs.length;
    const res = await rawUpgrade(h.port, '/reject-interim.php');
    assert.match(res, /^HTTP\/1\.1 502 /);
    assert.ok(h.logs.slice(before).some((l) => l.code === 'WSFPM_ERR_PHP_HEADERS'));
    await assertStillServes();
  });

  it('a 204 refusal has no Content-Length, and one Date (wsfpm\'s, not a second from PHP)', async () => {
    const res = await rawUpgrade(h.port, '/reject-no-content.php');
    assert.match(res, /^HTTP\/1\.1 204 /);
    assert.doesNotMatch(res, /content-length/i);
    assert.equal(res.match(/\r\ndate: /gi)?.length, 1);
    assert.doesNotMatch(res, /1970/);
  });

  it('returns a page that is not a websocket script as it is', async () => {
    const r = await refusal(h.url('/plain.php'));
    assert.equal(r.status, 200);
    assert.equal(r.body, 'plain page');
    const e = await refusal(h.url('/error-page.php'));
    assert.equal(e.status, 500);
  });

  it('forwards the subprotocol PHP picked', async () => {
    const c = await open(h.url('/subprotocol.php'), { protocols: ['other', 'chat.v1'] });
    assert.equal(c.ws.protocol, 'chat.v1');
    c.ws.close();
    await c.closed;
    const r = await refusal(h.url('/subprotocol.php'), { protocols: ['other'] });
    assert.equal(r.status, 400);
  });

  it('answers a plain GET with 426 and refuses a cross-site Origin with 403', async () => {
    const res = await fetch(`http://127.0.0.1:${h.port}/echo.php`);
    assert.equal(res.status, 426);
    assert.equal(res.headers.get('upgrade'), 'websocket');
    const bad = await refusal(h.url('/echo.php'), { origin: 'https://evil.example' });
    assert.equal(bad.status, 403);
    const same = await open(h.url('/echo.php'), { origin: `http://127.0.0.1:${h.port}` });
    same.ws.close();
    await same.closed;
  });

  for (const p of ['/../core.test.ts', '/%2e%2e/core.test.ts', '/..%2fcore.test.ts', '/echo.php%00.txt', '/nope.php', '/www/..%5cecho.php']) {
    it(`refuses ${p} with 404`, async () => {
      // ws normalises URLs it is given, so send the raw request target ourselves.
      const res = await rawUpgrade(h.port, p);
      assert.match(res, /^HTTP\/1\.1 404 /);
    });
  }
});

describe('closing', () => {
  it('hands the client\'s close code and reason to PHP', async () => {
    const log = path.join(tmp, 'client-close.txt');
    const c = await open(h.url(`/close-codes.php?log=${encodeURIComponent(log)}`));
    c.ws.close(4001, 'bye now');
    assert.equal((await c.closed).code, 4001);
    assert.equal(await waitForFile(log), '4001 bye now');
  });

  it('tells PHP 1006 when the client vanishes without a close frame', async () => {
    const log = path.join(tmp, 'vanish.txt');
    const c = await open(h.url(`/close-codes.php?log=${encodeURIComponent(log)}`));
    c.ws.terminate();
    assert.equal(await waitForFile(log), '1006 ');
  });

  it('closes with the code and reason PHP chose', async () => {
    const c = await open(h.url('/close-codes.php'));
    c.ws.send('close:4002:done here');
    assert.deepEqual(await c.closed, { code: 4002, reason: 'done here' });
  });

  it('closes 1000 when the script just ends', async () => {
    const c = await open(h.url('/close-codes.php'));
    c.ws.send('exit');
    assert.equal((await c.closed).code, 1000);
  });

  it('closes 1011 on a PHP fatal error, without leaking its text', async () => {
    const c = await open(h.url('/close-codes.php'));
    c.ws.send('fatal');
    const closed = await c.closed;
    assert.equal(closed.code, 1011);
    assert.doesNotMatch(closed.reason, /undefined|wsfpm_fixture/);
    const t = await open(h.url('/close-codes.php'));
    t.ws.send('throw');
    const thrown = await t.closed;
    assert.equal(thrown.code, 1011);
    assert.doesNotMatch(thrown.reason, /secret/);
    await assertStillServes();
  });

  it('closes 1011 when PHP writes garbage instead of frames, and logs it', async () => {
    const c = await open(h.url('/garbage.php'));
    assert.equal((await c.closed).code, 1011);
    assert.ok(h.logs.some((l) => l.code === 'WSFPM_ERR_PHP_FRAME'), 'one log line names the frame error');
    await assertStillServes();
  });

  it('closes 1011 when the worker is killed with SIGKILL, and lives on', async () => {
    const c = await open(h.url('/pid.php'));
    const pid = Number(await c.text());
    process.kill(pid, 'SIGKILL');
    assert.equal((await c.closed).code, 1011);
    assert.ok(h.logs.some((l) => l.code === 'WSFPM_ERR_PHP_DIED'));
    await assertStillServes();
  });

  it('closes 1009 on a client message over the limit, before PHP sees it', async () => {
    const c = await open(h.url('/echo.php'));
    c.ws.send(Buffer.alloc(h.config.maxMessage + 1));
    assert.equal((await c.closed).code, 1009);
    await assertStillServes();
  });

  it('keeps an idle connection open with pings and drops a client that never answers them', async () => {
    const idle = await open(h.url('/echo.php'));
    await sleep(1000);
    idle.ws.send('after idle');
    assert.equal(await idle.text(), 'after idle');
    idle.ws.close();
    const deaf = new Client(h.url('/echo.php'), { autoPong: false });
    await deaf.opened;
    assert.equal((await withTimeout(deaf.closed, 5000, 'deaf client dropped')).code, 1006);
  });
});

/** Sends an upgrade request with an exact request target; returns the status line and headers. */
export function rawUpgrade(port: number, target: string, extra = ''): Promise<string> {
  return new Promise((resolve, reject) => {
    import('node:net').then(({ default: net }) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`);
      });
      let got = '';
      s.on('data', (d) => {
        got += d.toString('latin1');
        if (got.includes('\r\n\r\n')) {
          s.destroy();
          resolve(got);
        }
      });
      s.on('error', reject);
      s.on('close', () => resolve(got));
    }, reject);
  });
}

describe('Handler API (Server::run)', () => {
  it('echoes through onMessage, reports an exception to onError and closes 1011, then onClose', async () => {
    const log = path.join(tmp, 'handler.txt');
    const c = await open(h.url(`/handler.php?log=${encodeURIComponent(log)}`));
    c.ws.send('via handler');
    assert.equal(await c.text(), 'via handler');
    c.ws.send('throw');
    const closed = await c.closed;
    assert.equal(closed.code, 1011);
    assert.doesNotMatch(closed.reason, /secret/);
    // onError's line is written before onClose's: wait for both.
    let text = await waitForFile(log);
    for (let i = 0; i < 200 && !text.includes('close'); i++) {
      await sleep(25);
      text = await readFile(log, 'utf8');
    }
    const lines = text.trim().split('\n');
    assert.equal(lines[0], 'error RuntimeException');
    assert.match(lines[1] ?? '', /^close 1011/);
  });
});
