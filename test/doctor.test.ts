/**
 * `wsfpm doctor` against a working daemon and against broken layouts it
 * must explain. (The Apache and Nginx suites run it through the real
 * proxies built from deploy/.)
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { runDoctor, type Finding } from '../src/doctor.ts';
import { startDaemon, startPool, type Harness } from './helpers/harness.ts';
import type { FpmPool } from '../src/fpm/pool.ts';

let pool: FpmPool;
let good: Omit<Harness, 'pool'>;
let distrusting: Omit<Harness, 'pool'>;
const servers: net.Server[] = [];

before(async () => {
  pool = await startPool(4);
  good = await startDaemon(pool, { pingInterval: '1000' });
  distrusting = await startDaemon(pool, { trustProxy: '' });
});
after(async () => {
  for (const s of servers) s.close();
  await good?.close();
  await distrusting?.close();
  await pool?.stop();
});

const fails = (f: Finding[]) => f.filter((x) => x.verdict === 'fail').map((x) => x.text);

async function listen(server: net.Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as net.AddressInfo).port;
}

/** A minimal reverse proxy that forwards upgrades to `port`, rewriting Host and adding X-Forwarded-For (and -Host/-Proto when asked). */
async function proxyTo(port: number, forwardHost: boolean): Promise<number> {
  const server = net.createServer((client) => {
    client.once('data', (head) => {
      const text = head.toString('latin1');
      const host = /\r\nHost: ([^\r]+)/i.exec(text)?.[1] ?? '';
      const extra = `X-Forwarded-For: 198.51.100.4\r\n${forwardHost ? `X-Forwarded-Host: ${host}\r\nX-Forwarded-Proto: http\r\n` : ''}`;
      const upstream = net.connect(port, '127.0.0.1', () => {
        // Like Apache without ProxyPreserveHost: the backend sees its own address as Host.
        upstream.write(text.replace(/\r\nHost: [^\r]+/i, `\r\nHost: 127.0.0.1:${port}`).replace('\r\n\r\n', `\r\n${extra}\r\n`));
        client.pipe(upstream).pipe(client);
      });
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
  });
  return listen(server);
}

describe('wsfpm doctor', () => {
  it('passes a working setup, and measures that the idle probe stays open', async () => {
    const findings = await runDoctor(`http://127.0.0.1:${good.port}/echo.php`, { idleCheck: 2 });
    assert.deepEqual(fails(findings), []);
    assert.ok(findings.some((f) => f.verdict === 'ok' && /accepted a websocket/.test(f.text)));
    assert.ok(findings.some((f) => f.verdict === 'ok' && /kept an idle websocket open for 2 s/.test(f.text)));
  });

  it('explains an upgrade that was answered as a plain page (proxy did not pass the upgrade on)', async () => {
    const port = await listen(http.createServer((_req, res) => res.end('<html>the page</html>')));
    const f = fails(await runDoctor(`http://127.0.0.1:${port}/chat.php`, { idleCheck: 0 }));
    assert.equal(f.length, 1);
    assert.match(f[0]!, /did not reach wsfpm: the upgrade was answered as a plain page.*ws:\/\//);
  });

  it('explains an untrusted proxy and a missing X-Forwarded-Host', async () => {
    const viaProxy = await proxyTo(distrusting.port, false);
    const f = fails(await runDoctor(`http://127.0.0.1:${viaProxy}/echo.php`, { idleCheck: 0 }));
    assert.ok(f.some((t) => /not trusted.*--trust-proxy/.test(t)), f.join('\n'));
    const trustedNoHost = await proxyTo(good.port, false);
    const g = fails(await runDoctor(`http://127.0.0.1:${trustedNoHost}/echo.php`, { idleCheck: 0 }));
    assert.ok(g.some((t) => /X-Forwarded-Host/.test(t)), g.join('\n'));
    const fine = await proxyTo(good.port, true);
    assert.deepEqual(fails(await runDoctor(`http://127.0.0.1:${fine}/echo.php`, { idleCheck: 0 })), []);
  });

  it('explains a script wsfpm cannot find, and nothing listening', async () => {
    const f = fails(await runDoctor(`http://127.0.0.1:${good.port}/missing/chat.php`, { idleCheck: 0 }));
    assert.ok(f.some((t) => /WSFPM_ERR_NOT_FOUND.*--root/.test(t)), f.join('\n'));
    const closed = await listen(net.createServer());
    servers.pop()!.close();
    await new Promise((r) => setTimeout(r, 50));
    const g = fails(await runDoctor(`http://127.0.0.1:${closed}/x.php`, { idleCheck: 0 }));
    assert.match(g[0] ?? '', /ECONNREFUSED/);
  });

  it('tells a proxy idle timeout shorter than the ping interval', async () => {
    // A proxy that drops connections idle for 1 s, in front of a daemon pinging every 25 s.
    const slow = await startDaemon(pool, { pingInterval: '25000' });
    try {
      const server = net.createServer((client) => {
        const upstream = net.connect(slow.port, '127.0.0.1');
        client.pipe(upstream).pipe(client);
        const cut = () => {
          client.destroy();
          upstream.destroy();
        };
        let t = setTimeout(cut, 1000);
        const touch = () => {
          clearTimeout(t);
          t = setTimeout(cut, 1000);
        };
        client.on('data', touch);
        upstream.on('data', touch);
        client.on('error', cut);
        upstream.on('error', cut);
        client.on('close', () => clearTimeout(t));
      });
      const port = await listen(server);
      const f = fails(await runDoctor(`http://127.0.0.1:${port}/echo.php`, { idleCheck: 4 }));
      assert.ok(f.some((t) => /cuts idle websockets after 1\.\d s.*pings every 25 s.*--ping-interval/.test(t)), f.join('\n'));
    } finally {
      await slow.close();
    }
  });
});
