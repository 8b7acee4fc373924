/** X-Forwarded-* believed only from trusted proxies: unit cases and a real php-fpm check. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { clientView, isTrusted, parseTrustList } from '../src/server/forwarded.ts';
import { open, refusal, startDaemon, startPool, type Harness } from './helpers/harness.ts';
import type { FpmPool } from '../src/fpm/pool.ts';

const peer = { address: '127.0.0.1', port: 5555, localHost: '127.0.0.1:8740', tls: false };

describe('clientView', () => {
  const trusted = parseTrustList('127.0.0.1,::1,10.0.0.0/8');

  it('believes a trusted proxy, taking the right-most untrusted X-Forwarded-For hop', () => {
    const v = clientView(trusted, peer, { host: '127.0.0.1:8740', 'x-forwarded-for': '6.6.6.6, 203.0.113.9, 10.1.1.1', 'x-forwarded-host': 'example.com', 'x-forwarded-proto': 'https' });
    assert.deepEqual(v, { remoteAddress: '203.0.113.9', remotePort: 0, host: 'example.com', https: true, via: '127.0.0.1' });
  });

  it('takes the X-Forwarded-Host/-Proto the trusted proxy appended, not the client\'s forgery in front of it', () => {
    const v = clientView(trusted, peer, { host: '127.0.0.1:8740', 'x-forwarded-host': 'evil.example, site.test', 'x-forwarded-proto': 'https, http' });
    assert.equal(v.host, 'site.test');
    assert.equal(v.https, false);
  });

  it('ignores every forwarded header from an untrusted peer', () => {
    const v = clientView(trusted, { ...peer, address: '192.0.2.1' }, { host: 'site.test', 'x-forwarded-for': '6.6.6.6', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' });
    assert.deepEqual(v, { remoteAddress: '192.0.2.1', remotePort: 5555, host: 'site.test', https: false });
  });

  it('maps IPv4-in-IPv6 peers, refuses a malformed X-Forwarded-Host, and knows CIDR ranges', () => {
    const v = clientView(trusted, { ...peer, address: '::ffff:127.0.0.1' }, { host: 'a', 'x-forwarded-host': 'bad host/x' });
    assert.equal(v.via, '127.0.0.1');
    assert.equal(v.host, 'a');
    assert.ok(isTrusted(trusted, '10.200.3.4'));
    assert.ok(!isTrusted(trusted, '11.0.0.1'));
    assert.ok(isTrusted(trusted, '::1'));
    assert.throws(() => parseTrustList('localhost'), /expected IP addresses/);
    assert.throws(() => parseTrustList('10.0.0.0/40'), /prefix/);
  });
});

describe('through a real php-fpm', () => {
  let pool: FpmPool;
  let trusting: Omit<Harness, 'pool'>;
  let distrusting: Omit<Harness, 'pool'>;
  before(async () => {
    pool = await startPool(4);
    trusting = await startDaemon(pool, { trustProxy: '127.0.0.1,::1' });
    distrusting = await startDaemon(pool, { trustProxy: '' });
  });
  after(async () => {
    await trusting?.close();
    await distrusting?.close();
    await pool?.stop();
  });

  const forwarded = { 'X-Forwarded-For': '203.0.113.7', 'X-Forwarded-Host': 'example.com', 'X-Forwarded-Proto': 'https' };

  it('from a trusted proxy, PHP sees the client IP, host and scheme, and the Origin check uses them', async () => {
    const c = await open(trusting.url('/server-info.php'), { headers: forwarded, origin: 'https://example.com' });
    const info = JSON.parse(await c.text()) as Record<string, unknown>;
    assert.equal(info.REMOTE_ADDR, '203.0.113.7');
    assert.equal(info.HTTP_HOST, 'example.com');
    assert.equal(info.SERVER_NAME, 'example.com');
    assert.equal(info.SERVER_PORT, '443');
    assert.equal(info.HTTPS, 'on');
    c.ws.close();
    await c.closed;
  });

  it('from anyone else, the headers change nothing and the forged origin is refused', async () => {
    const c = await open(distrusting.url('/server-info.php'), { headers: forwarded });
    const info = JSON.parse(await c.text()) as Record<string, unknown>;
    assert.equal(info.REMOTE_ADDR, '127.0.0.1');
    assert.equal(info.HTTP_HOST, `127.0.0.1:${distrusting.port}`);
    assert.equal(info.HTTPS, null);
    c.ws.close();
    await c.closed;
    const r = await refusal(distrusting.url('/echo.php'), { headers: forwarded, origin: 'https://example.com' });
    assert.equal(r.status, 403);
  });
});
