/**
 * `wsfpm doctor` against a working daemon and against broken layouts it
 * must explain, and what /.wsfpm-doctor tells with and without the doctor
 * token. (The Apache and Nginx suites run it through the real proxies built
 * from deploy/.)
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { randomBytes } from 'node:crypto';
import { runDoctor, type Finding } from '../src/doctor.ts';
import { DOCTOR_TOKEN_HEADER, type DoctorReport } from '../src/server/diagnose.ts';
import { VERSION } from '../src/version.ts';
import { startDaemon, startPool, type Harness } from './helpers/harness.ts';
import type { FpmPool } from '../src/fpm/pool.ts';

let pool: FpmPool;
let good: Omit<Harness, 'pool'>;
let distrusting: Omit<Harness, 'pool'>;
const servers: net.Server[] = [];
const TOKEN = 'doctor-token-0123456789';

before(async () => {
  pool = await startPool(4);
  good = await startDaemon(pool, { pingInterval: '1000', doctorToken: TOKEN });
  distrusting = await startDaemon(pool, { trustProxy: '', doctorToken: TOKEN });
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

/** The diagnostic endpoint's answer to an upgrade request, status and parsed body. */
function askEndpoint(port: number, headers: Record<string, string> = {}): Promise<{ status: number; body: string; report: DoctorReport }> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port, path: '/.wsfpm-doctor', agent: false,
      headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Key': randomBytes(16).toString('base64'), 'Sec-WebSocket-Version': '13', Origin: `http://127.0.0.1:${port}`, ...headers },
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, report: JSON.parse(body) as DoctorReport }));
    });
    req.on('upgrade', () => reject(new Error('the diagnostic endpoint upgraded')));
    req.on('error', reject);
    req.end();
  });
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

describe('/.wsfpm-doctor', () => {
  it('tells the public only what its request showed: no version, --trust-proxy, ping interval or peer address', async () => {
    const { status, body, report } = await askEndpoint(good.port, { 'X-Forwarded-For': '198.51.100.4' });
    assert.equal(status, 200);
    assert.deepEqual(Object.keys(report).sort(), ['client', 'daemon', 'doctor', 'forwarded', 'origin', 'peerTrusted']);
    assert.equal(report.daemon, null);
    assert.equal(report.peerTrusted, true);
    assert.equal(report.forwarded.for, '198.51.100.4');
    assert.equal(report.client.address, '198.51.100.4');
    assert.equal(report.origin.allowed, true);
    assert.ok(!body.includes(VERSION), body);
    assert.ok(!body.includes('::1'), `the trust list leaked: ${body}`);
  });

  it('with the doctor token also tells the daemon\'s settings; a wrong token gets the public answer', async () => {
    const { report } = await askEndpoint(good.port, { [DOCTOR_TOKEN_HEADER]: TOKEN });
    assert.deepEqual(report.daemon, { version: VERSION, peer: '127.0.0.1', pingIntervalMs: 1000, trustProxy: '127.0.0.1,::1' });
    for (const wrong of [TOKEN.slice(0, -1) + 'x', TOKEN + 'x', '']) {
      const pub = await askEndpoint(good.port, { [DOCTOR_TOKEN_HEADER]: wrong });
      assert.equal(pub.report.daemon, null, `token ${JSON.stringify(wrong)}`);
    }
    // A daemon without a doctor token tells no one, whatever is sent; SIGHUP gives it one.
    const tokenless = await startDaemon(pool);
    try {
      assert.equal((await askEndpoint(tokenless.port, { [DOCTOR_TOKEN_HEADER]: TOKEN })).report.daemon, null);
      assert.deepEqual(tokenless.daemon.reload({ ...tokenless.config, doctorToken: TOKEN }).applied, ['doctorToken']);
      assert.equal((await askEndpoint(tokenless.port, { [DOCTOR_TOKEN_HEADER]: TOKEN })).report.daemon?.version, VERSION);
    } finally {
      await tokenless.close();
    }
  });
});

describe('wsfpm doctor', () => {
  it('passes a working setup, and measures that the idle probe stays open', async () => {
    const findings = await runDoctor(`http://127.0.0.1:${good.port}/echo.php`, { idleCheck: 2, token: TOKEN });
    assert.deepEqual(fails(findings), []);
    assert.ok(findings.some((f) => f.verdict === 'ok' && f.text === `the upgrade reaches wsfpm ${VERSION} (proxy at 127.0.0.1)`), JSON.stringify(findings));
    assert.ok(findings.some((f) => f.verdict === 'ok' && /accepted a websocket/.test(f.text)));
    assert.ok(findings.some((f) => f.verdict === 'ok' && /kept an idle websocket open for 2 s/.test(f.text)));
  });

  it('explains an upgrade that was answered as a plain page (proxy did not pass the upgrade on)', async () => {
    const port = await listen(http.createServer((_req, res) => res.end('<html>the page</html>')));
    const f = fails(await runDoctor(`http://127.0.0.1:${port}/chat.php`, { idleCheck: 0 }));
    assert.equal(f.length, 1);
    assert.match(f[0]!, /did not reach wsfpm: the upgrade was answered as a plain page.*ws:\/\//);
  });

  it('without the token passes the same setup, names no version, and says a wrong token was not taken', async () => {
    const findings = await runDoctor(`http://127.0.0.1:${good.port}/echo.php`, { idleCheck: 0 });
    assert.deepEqual(fails(findings), []);
    assert.ok(findings.some((f) => f.verdict === 'ok' && f.text === 'the upgrade reaches wsfpm'), JSON.stringify(findings));
    assert.ok(!JSON.stringify(findings).includes(VERSION));
    const wrong = await runDoctor(`http://127.0.0.1:${good.port}/echo.php`, { idleCheck: 0, token: 'not-the-doctor-token' });
    assert.ok(wrong.some((f) => f.verdict === 'warn' && /did not take the doctor token/.test(f.text)), JSON.stringify(wrong));
  });

  it('explains an untrusted proxy and a missing X-Forwarded-Host', async () => {
    const viaProxy = await proxyTo(distrusting.port, false);
    const f = fails(await runDoctor(`http://127.0.0.1:${viaProxy}/echo.php`, { idleCheck: 0, token: TOKEN }));
    assert.ok(f.some((t) => /the proxy at 127\.0\.0\.1 .*not trusted.*--trust-proxy \(now ""\)/.test(t)), f.join('\n'));
    const blind = fails(await runDoctor(`http://127.0.0.1:${viaProxy}/echo.php`, { idleCheck: 0 }));
    assert.ok(blind.some((t) => /not trusted.*--trust-proxy.*with --token/.test(t)), blind.join('\n'));
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
    const slow = await startDaemon(pool, { pingInterval: '25000', doctorToken: TOKEN });
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
      const f = fails(await runDoctor(`http://127.0.0.1:${port}/echo.php`, { idleCheck: 4, token: TOKEN }));
      assert.ok(f.some((t) => /cuts idle websockets after 1\.\d s.*pings every 25 s.*--ping-interval/.test(t)), f.join('\n'));
      // Without the token the interval is not told: the cut is reported, not judged.
      const blind = await runDoctor(`http://127.0.0.1:${port}/echo.php`, { idleCheck: 4 });
      assert.deepEqual(fails(blind), []);
      assert.ok(blind.some((x) => x.verdict === 'warn' && /cuts idle websockets after 1\.\d s: wsfpm's --ping-interval must be below \d+ s.*--token/.test(x.text)), JSON.stringify(blind));
    } finally {
      await slow.close();
    }
  });
});
