/**
 * Hostile and broken clients, limits, drain and metrics. Each case asserts
 * the precise outcome (status or close code, and the log line's code) and
 * that the daemon still serves a fresh connection afterwards.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { open, refusal, sleep, startDaemon, startPool, withTimeout, type Harness } from './helpers/harness.ts';
import type { FpmPool } from '../src/fpm/pool.ts';

let pool: FpmPool;
let h: Omit<Harness, 'pool'>;
let tmp: string;

before(async () => {
  pool = await startPool(24);
  h = await startDaemon(pool, { requestTimeout: '1000', maxPerIp: '20', messageRate: '50' });
  tmp = await mkdtemp(path.join(os.tmpdir(), 'wsfpm-faults-'));
});
after(async () => {
  await h?.close();
  await pool?.stop();
  await rm(tmp, { recursive: true, force: true });
});
afterEach(async () => {
  const c = await open(h.url('/echo.php'));
  c.ws.send('still serving');
  assert.equal(await c.text(), 'still serving');
  c.ws.close();
  await c.closed;
});

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

/** A raw TCP client: writes `request`, resolves with everything read until the server closes (or `ms`). */
function raw(request: string | Buffer, ms = 5000, then?: (s: net.Socket, got: () => Buffer) => void): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = net.connect(h.port, '127.0.0.1', () => {
      s.write(request);
      then?.(s, () => Buffer.concat(chunks));
    });
    const t = setTimeout(() => s.destroy(), ms);
    s.on('data', (d) => chunks.push(d));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(t);
      resolve(Buffer.concat(chunks));
    });
  });
}

const upgrade = (target: string, headers = `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n`): string =>
  `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${h.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${headers}\r\n`;

/** A masked client frame. */
function frame(opcode: number, payload: Buffer, { fin = true, masked = true } = {}): Buffer {
  const mask = Buffer.from([1, 2, 3, 4]);
  const head = Buffer.from([(fin ? 0x80 : 0) | opcode, (masked ? 0x80 : 0) | payload.length]);
  const body = masked ? Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!)) : payload;
  return Buffer.concat(masked ? [head, mask, body] : [head, body]);
}

/** Opens a raw websocket to echo.php, sends `bytes` after the 101, returns the close code the server sent. */
async function closeCodeAfter(bytes: Buffer): Promise<number> {
  const got = await raw(upgrade('/echo.php'), 5000, (s, sofar) => {
    const wait = setInterval(() => {
      if (sofar().includes('\r\n\r\n')) {
        clearInterval(wait);
        s.write(bytes);
      }
    }, 10);
  });
  const text = got.toString('latin1');
  assert.match(text, /^HTTP\/1\.1 101 /);
  const body = got.subarray(text.indexOf('\r\n\r\n') + 4);
  // The first frame after the 101 that is a close frame (0x88): code in its first two payload bytes.
  for (let i = 0; i + 3 < body.length; ) {
    const op = body[i]! & 0x0f;
    const len = body[i + 1]! & 0x7f;
    if (op === 0x8) return body.readUInt16BE(i + 2);
    i += 2 + len;
  }
  throw new Error(`no close frame in ${body.toString('hex')}`);
}

describe('malformed websocket traffic', () => {
  it('a reserved opcode closes 1002', async () => {
    assert.equal(await closeCodeAfter(frame(0x3, Buffer.from('x'))), 1002);
  });
  it('an unmasked client frame closes 1002', async () => {
    assert.equal(await closeCodeAfter(frame(0x1, Buffer.from('hi'), { masked: false })), 1002);
  });
  it('invalid UTF-8 in a text frame closes 1007', async () => {
    assert.equal(await closeCodeAfter(frame(0x1, Buffer.from([0xc3, 0x28]))), 1007);
  });
  it('a continuation frame with no message to continue closes 1002', async () => {
    assert.equal(await closeCodeAfter(frame(0x0, Buffer.from('x'))), 1002);
  });
});

describe('bad handshakes', () => {
  it('a bad or missing key, or a wrong version, is 400 before PHP is asked', async () => {
    for (const headers of [`Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n`, `Sec-WebSocket-Version: 13\r\n`, `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 8\r\n`]) {
      const got = (await raw(upgrade('/echo.php', headers))).toString('latin1');
      assert.match(got, /^HTTP\/1\.1 400 /);
      assert.match(got, /x-wsfpm-error: WSFPM_ERR_BAD_HANDSHAKE/i);
    }
  });
  it('a client that sends its headers too slowly (slowloris) gets 408 and is dropped', async () => {
    const got = await raw(`GET /echo.php HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n`, 8000, (s) => {
      const drip = setInterval(() => (s.writable ? s.write('X-Drip: 1\r\n') : clearInterval(drip)), 300);
      s.on('close', () => clearInterval(drip));
    });
    assert.match(got.toString('latin1'), /^HTTP\/1\.1 408 /);
  });
  it('oversized headers are 431', async () => {
    const got = (await raw(upgrade('/echo.php', `X-Big: ${'a'.repeat(20_000)}\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n`))).toString('latin1');
    assert.match(got, /^HTTP\/1\.1 431 /);
  });
});

describe('limits', () => {
  it('more connections from one address than --max-per-ip get 429', async () => {
    const held = await Promise.all(Array.from({ length: 20 }, () => open(h.url('/echo.php'))));
    const r = await refusal(h.url('/echo.php'));
    assert.equal(r.status, 429);
    assert.equal(r.headers['x-wsfpm-error'], 'WSFPM_ERR_TOO_MANY_FROM_IP');
    for (const c of held) c.ws.close();
    await Promise.all(held.map((c) => c.closed));
  });
  it('a client over --message-rate is closed with 1008', async () => {
    const c = await open(h.url('/echo.php'));
    for (let i = 0; i < 200; i++) c.ws.send('x');
    assert.equal((await c.closed).code, 1008);
    assert.ok(h.logs.some((l) => l.code === 'WSFPM_ERR_RATE_LIMIT'));
  });
  it('1,000 connections opened and dropped without a close frame leave nothing behind', async () => {
    for (let batch = 0; batch < 50; batch++) {
      const cs = await Promise.all(Array.from({ length: 20 }, () => open(h.url('/echo.php'))));
      for (const c of cs) c.ws.terminate();
      await Promise.all(cs.map((c) => c.closed));
      // Their PHP scripts see EOF and end; wait for the workers to be free again.
      for (let i = 0; i < 100 && h.daemon.connections() > 0; i++) await sleep(20);
    }
    assert.equal(h.daemon.connections(), 0);
    assert.equal(h.daemon.hub.size, 0);
  });
});

describe('metrics', () => {
  it('/metrics on the control listener counts connections, close codes, messages and rejects', async () => {
    const c = await open(h.url('/echo.php'));
    c.ws.send('count me');
    await c.text();
    c.ws.close(4005);
    await c.closed;
    await refusal(h.url('/nope.php'));
    const res = await fetch(`http://${h.daemon.control!.address.replace(/^tcp:/, '')}/metrics`);
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.match(text, /^wsfpm_connections_total \d+/m);
    assert.match(text, /^wsfpm_connections_closed_total\{code="4005"\} 1$/m);
    assert.match(text, /^wsfpm_messages_total\{direction="in"\} \d+/m);
    assert.match(text, /^wsfpm_rejects_total\{reason="WSFPM_ERR_NOT_FOUND"\} \d+/m);
    assert.match(text, /^wsfpm_fastcgi_header_seconds_count \d+/m);
  });
});

describe('graceful drain', () => {
  it('PHP is told 1001, in-flight messages arrive, clients get 1001, new upgrades are refused', async () => {
    const own = await startDaemon(pool, {});
    try {
      const log = path.join(tmp, 'drain.txt');
      const a = await open(own.url(`/close-codes.php?log=${encodeURIComponent(log)}`));
      const spam = await open(own.url('/spam.php'));
      spam.ws.send('500');
      const drained = own.daemon.drain(5000);
      assert.equal((await a.closed).code, 1001);
      assert.equal(await readFile(log, 'utf8'), '1001 server shutting down');
      // spam.php was mid-send: every message it wrote before its close arrives, then its own close.
      const closed = await spam.closed;
      const got = spam.messages.map((m) => m.data.toString());
      assert.deepEqual(got, Array.from({ length: got.length }, (_, i) => `m${i}`));
      assert.ok([1000, 1001].includes(closed.code));
      await withTimeout(drained, 8000, 'drain finished');
      assert.equal(own.daemon.connections(), 0);
      await assert.rejects(open(own.url('/echo.php')));
    } finally {
      await own.close();
    }
  });
});
