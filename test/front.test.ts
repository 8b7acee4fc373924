/**
 * wsfpm in front of a site (--upstream), on one TLS port with a certificate
 * made here by openssl:
 *
 * - before a real Apache serving a PHP site on php-fpm, with
 *   deploy/apache/behind-wsfpm.conf included unchanged: pages, static files,
 *   POST bodies and a multi-megabyte upload, two cookies, redirects, PHP
 *   seeing the real client and https, wsfpm's own websockets beside it, 504
 *   for a slow page, a certificate swapped under an open websocket, and the
 *   plain-HTTP redirect port;
 * - before nginx with deploy/nginx/behind-wsfpm*.conf (client and https);
 * - before a small Node server, for what Apache cannot show: the exact
 *   headers the site receives, bodies streaming both ways, other websockets
 *   tunnelled, upgrades that are not websockets;
 * - before nothing: 502;
 * - and standalone mode (--pages) over TLS.
 *
 * Clients connect from 127.0.0.2 (CLIENT_IP), so the site's view of the
 * client can be told from wsfpm's own 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate, createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { WebSocketServer } from 'ws';
import { open, refusal, startDaemon } from './helpers/harness.ts';
import { CLIENT_IP, DEPLOY, FRONT, freePort, startApache, startNginx, startSitePool, tempDir, unquotedDocLines, docBlockCount } from './helpers/webservers.ts';

type Daemon = Awaited<ReturnType<typeof startDaemon>>;

const BEHIND_APACHE = path.join(DEPLOY, 'apache', 'behind-wsfpm.conf');
const BEHIND_NGINX = path.join(DEPLOY, 'nginx', 'behind-wsfpm.conf');
const BEHIND_NGINX_PHP = path.join(DEPLOY, 'nginx', 'behind-wsfpm-php.conf');
const OPENSSL = '/usr/bin/openssl';
const MiB = 1024 * 1024;

interface Cert {
  cert: string;
  key: string;
  pem: Buffer;
  fingerprint: string;
}

/** A self-signed certificate for 127.0.0.1 (the command the docs give for a test certificate). */
async function makeCert(dir: string, name: string): Promise<Cert> {
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  await promisify(execFile)(OPENSSL, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '1']);
  const pem = await readFile(cert);
  return { cert, key, pem, fingerprint: new X509Certificate(pem).fingerprint256 };
}

interface Got {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** The certificate the server presented (https only). */
  fingerprint: string | null;
}

/** One request on a fresh connection from CLIENT_IP; `ca` trusts the test's certificates. */
function send(url: string, opts: { method?: string; headers?: Record<string, string>; body?: Buffer | string; ca?: Buffer[] } = {}): Promise<Got> {
  return new Promise((resolve, reject) => {
    const mod = url.startsWith('https:') ? https : http;
    const req = mod.request(url, { method: opts.method ?? 'GET', headers: opts.headers, localAddress: CLIENT_IP, agent: false, ...(opts.ca ? { ca: opts.ca } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      const tls = res.socket as TLSSocket;
      const fingerprint = typeof tls.getPeerCertificate === 'function' ? tls.getPeerCertificate().fingerprint256 : null;
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), fingerprint }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(15_000, () => req.destroy(new Error(`${url} timed out`)));
    req.end(opts.body);
  });
}

const json = (got: Got): Record<string, unknown> => JSON.parse(got.body.toString()) as Record<string, unknown>;
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const codes = (d: Daemon, code: string): number => d.logs.filter((l) => l.code === code).length;

/** Raw bytes to a port from CLIENT_IP; everything the server sent until it closed. */
function rawExchange(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: CLIENT_IP }, () => s.write(request));
    let out = '';
    s.on('data', (c: Buffer) => (out += c.toString()));
    s.on('end', () => resolve(out));
    s.on('error', reject);
    s.setTimeout(10_000, () => s.destroy(new Error('raw exchange timed out')));
  });
}

/**
 * The Node site: /headers answers with what it received; /echo-body with
 * the body; /stream answers each chunk of the request body as it arrives;
 * every websocket upgrade is answered here (JSON of the request first, then
 * an echo).
 */
async function startNodeSite(): Promise<{ port: number; close(): Promise<void> }> {
  const wss = new WebSocketServer({ noServer: true });
  const server = http.createServer((req, res) => {
    if (req.url === '/cut') {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' });
      res.write('partial');
      setTimeout(() => res.socket?.destroy(), 50);
      return;
    }
    if (req.url === '/stream') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      req.on('data', (c: Buffer) => res.write(`got:${c.toString()};`));
      req.on('end', () => res.end('end'));
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const xff = req.rawHeaders.filter((_, i) => i % 2 === 0 && req.rawHeaders[i]!.toLowerCase() === 'x-forwarded-for').length;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ url: req.url, method: req.method, headers: req.headers, xffLines: xff, body: Buffer.concat(chunks).toString() }));
    });
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.send(JSON.stringify({ upstream: true, url: req.url, headers: req.headers }));
      ws.on('message', (data, binary) => ws.send(data, { binary }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

const cleanups: Array<() => Promise<unknown>> = [];
let tmp: string;
let certA: Cert;
let certB: Cert;
/** TLS in front of Apache (cert A, swapped for B by the reload test), --upstream-timeout 1 s, a redirect port. */
let apacheFront: Daemon;
let redirectPort: number;
let apachePort: number;
let nginxPort: number;
/** TLS in front of nginx. */
let nginxFront: Daemon;
/** Plain HTTP in front of the Node site, --ws-paths /live/. */
let nodeFront: Daemon;
/** In front of nothing. */
let nowhere: Daemon;
/** Standalone (--pages) over TLS. */
let standalone: Daemon;

before(async () => {
  assert.ok(existsSync(OPENSSL), 'openssl is needed to make the test certificates: apt-get install openssl');
  tmp = await tempDir('wsfpm-front-test-');
  cleanups.push(() => rm(tmp, { recursive: true, force: true }));
  [certA, certB] = await Promise.all([makeCert(tmp, 'a'), makeCert(tmp, 'b')]);
  // The Apache front's files: the reload test overwrites them. The others keep copies of A.
  const live = { cert: path.join(tmp, 'live.crt'), key: path.join(tmp, 'live.key') };
  await copyFile(certA.cert, live.cert);
  await copyFile(certA.key, live.key);

  const site = await startSitePool(10);
  cleanups.push(() => site.stop());
  const upstreamFile = path.join(tmp, 'wsfpm-upstream.conf');
  await writeFile(upstreamFile, 'upstream wsfpm {\n    server 127.0.0.1:9;\n}\n');
  const [apache, nginx, nodeSite] = await Promise.all([
    startApache({ vhosts: [{ docroot: FRONT, fpmSocket: site.socket, include: BEHIND_APACHE }], timeout: 30, modules: ['remoteip', 'setenvif'] }),
    startNginx({ upstreamFile, servers: [{ root: FRONT, fpmSocket: site.socket, include: [], phpInclude: [BEHIND_NGINX_PHP] }], readTimeout: '30s', httpIncludes: [BEHIND_NGINX] }),
    startNodeSite(),
  ]);
  cleanups.push(() => apache.stop(), () => nginx.stop(), () => nodeSite.close());
  apachePort = apache.ports[0]!;
  nginxPort = nginx.ports[0]!;

  const daemon = async (flags: Record<string, string>): Promise<Daemon> => {
    const d = await startDaemon(site, { root: FRONT, ...flags });
    cleanups.push(() => d.close());
    return d;
  };
  redirectPort = await freePort();
  [apacheFront, nginxFront, nodeFront, nowhere, standalone] = await Promise.all([
    daemon({ upstream: `http://127.0.0.1:${apache.ports[0]}`, upstreamTimeout: '1000', tlsCert: live.cert, tlsKey: live.key, redirectPort: String(redirectPort) }),
    daemon({ upstream: `http://127.0.0.1:${nginx.ports[0]}`, tlsCert: certA.cert, tlsKey: certA.key }),
    daemon({ upstream: `http://127.0.0.1:${nodeSite.port}`, wsPaths: '/live/' }),
    daemon({ upstream: `http://127.0.0.1:${await freePort()}` }),
    daemon({ pages: 'true', tlsCert: certA.cert, tlsKey: certA.key }),
  ]);
});

after(async () => {
  for (const f of cleanups.reverse()) await f().catch((err: unknown) => console.error('cleanup:', err));
});

const forged = { 'X-Forwarded-For': '6.6.6.6', 'X-Forwarded-Host': 'evil.example', 'X-Forwarded-Proto': 'http', 'X-Forwarded-Port': '1', Forwarded: 'for=6.6.6.6', 'X-Real-IP': '6.6.6.6' };

describe('in front of Apache, over TLS (deploy/apache/behind-wsfpm.conf)', () => {
  const base = (): string => `https://127.0.0.1:${apacheFront.port}`;
  const get = (p: string, o: Parameters<typeof send>[1] = {}): Promise<Got> => send(base() + p, { ca: [certA.pem], ...o });

  it('PHP behind sees the real client and https, never what the client claimed; the certificate is the one configured', async () => {
    const got = await get('/info.php', { headers: forged });
    assert.equal(got.status, 200, got.body.toString());
    assert.equal(got.fingerprint, certA.fingerprint);
    const seen = json(got);
    assert.equal(seen.REMOTE_ADDR, CLIENT_IP, 'mod_remoteip took the client from wsfpm\'s X-Forwarded-For');
    assert.equal(seen.HTTPS, 'on', 'SetEnvIfExpr believed wsfpm\'s X-Forwarded-Proto');
    assert.equal(seen.HTTP_HOST, `127.0.0.1:${apacheFront.port}`, 'Host is the one the client used');
    assert.equal(seen.HTTP_X_FORWARDED_FOR, null, 'mod_remoteip consumed the header: one trusted hop, nothing left of the forgery');
    assert.equal(seen.HTTP_X_FORWARDED_PROTO, 'https');
    assert.equal(seen.HTTP_X_FORWARDED_HOST, `127.0.0.1:${apacheFront.port}`);
    assert.equal(seen.HTTP_X_FORWARDED_PORT, String(apacheFront.port));
    assert.equal(seen.HTTP_FORWARDED, null);
    assert.equal(seen.HTTP_X_REAL_IP, null);
  });

  it('a client that reaches Apache directly cannot claim another address or https', async () => {
    const seen = json(await send(`http://127.0.0.1:${apachePort}/info.php`, { headers: { 'X-Forwarded-For': '6.6.6.6', 'X-Forwarded-Proto': 'https' } }));
    assert.equal(seen.REMOTE_ADDR, CLIENT_IP);
    assert.equal(seen.HTTPS, null);
  });

  it('pages, static files, POST forms, cookies both ways', async () => {
    assert.equal((await get('/')).body.toString(), 'front index');
    const file = await get('/hello.txt');
    assert.equal(file.status, 200);
    assert.equal(file.body.toString(), 'hello static\n');
    assert.equal((await get('/missing.txt')).status, 404);
    const head = await get('/hello.txt', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], '13');
    assert.equal(head.body.length, 0);

    const form = await get('/info.php', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: 'a=1; b=2' }, body: 'name=alice&city=Z%C3%BCrich' });
    const seen = json(form);
    assert.deepEqual(seen.post, { name: 'alice', city: 'Zürich' });
    assert.equal(seen.REQUEST_METHOD, 'POST');
    assert.equal(seen.HTTP_COOKIE, 'a=1; b=2');

    const cookies = await get('/cookies.php');
    assert.equal(cookies.body.toString(), 'two cookies');
    const set = cookies.headers['set-cookie'] ?? [];
    assert.equal(set.length, 2, JSON.stringify(set));
    assert.match(set[0]!, /^first=one; path=\/; HttpOnly$/);
    assert.match(set[1]!, /^second=two; path=\/; SameSite=Lax$/);
  });

  it('a multi-megabyte upload reaches PHP whole (hash checked by PHP)', async () => {
    const body = randomBytes(6 * MiB);
    const got = await get('/upload.php', { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body });
    assert.equal(got.status, 200, got.body.toString());
    assert.deepEqual(json(got), { length: body.length, sha256: sha256(body) });
  });

  it('redirects point at https: PHP\'s own, and Apache\'s made absolute from the Host header', async () => {
    const relative = await get('/redirect.php');
    assert.equal(relative.status, 302);
    assert.equal(new URL(relative.headers.location!, base()).href, `${base()}/info.php?from=relative`);
    const absolute = await get('/redirect.php?to=absolute');
    assert.equal(absolute.status, 302);
    assert.equal(absolute.headers.location, `${base()}/info.php?from=absolute`, 'PHP built it from HTTPS=on');
    const slash = await get('/dir');
    assert.equal(slash.status, 301);
    assert.equal(slash.headers.location, `${base()}/dir/`, 'Apache says http://…, wsfpm passes on https://…');
    assert.equal((await get('/dir/')).body.toString(), 'directory index');
  });

  it('wsfpm\'s own websocket on the same TLS port; an upgrade of no script of wsfpm\'s goes to the site', async () => {
    const c = await open(`wss://127.0.0.1:${apacheFront.port}/wsecho.php`, { ca: certA.pem, localAddress: CLIENT_IP, headers: forged });
    assert.deepEqual(JSON.parse(await c.text()), { REMOTE_ADDR: CLIENT_IP, HTTPS: 'on' });
    c.ws.send('through TLS');
    assert.equal(await c.text(), 'through TLS');
    c.ws.close(1000);
    await c.closed;
    // The same URL as a page is the site's.
    assert.equal((await get('/wsecho.php')).body.toString(), 'wsecho as a page');
    // No script of that name under --root: Apache answers the upgrade (with its 404).
    const r = await refusal(`wss://127.0.0.1:${apacheFront.port}/nowhere`, { ca: certA.pem, localAddress: CLIENT_IP });
    assert.equal(r.status, 404);
    assert.equal(r.headers['x-wsfpm-error'], undefined, 'the answer is Apache\'s');
  });

  it('a slow page: 504 after --upstream-timeout, with one log line; a quick one is untouched', async () => {
    assert.equal((await get('/slow.php?ms=100')).body.toString(), 'slow done');
    const before = codes(apacheFront, 'WSFPM_ERR_UPSTREAM_TIMEOUT');
    const t0 = Date.now();
    const slow = await get('/slow.php?ms=4000');
    const took = Date.now() - t0;
    assert.equal(slow.status, 504);
    assert.equal(slow.headers['x-wsfpm-error'], 'WSFPM_ERR_UPSTREAM_TIMEOUT');
    assert.ok(took >= 900 && took < 3000, `answered after ${took} ms`);
    assert.equal(codes(apacheFront, 'WSFPM_ERR_UPSTREAM_TIMEOUT'), before + 1);
  });

  it('the redirect port answers plain HTTP with 301 to the same URL on https', async () => {
    const r = await send(`http://127.0.0.1:${redirectPort}/info.php?x=1&y=2`, { headers: { host: 'example.test:8080' } });
    assert.equal(r.status, 301);
    assert.equal(r.headers.location, `https://example.test:${apacheFront.port}/info.php?x=1&y=2`);
    const ip = await send(`http://127.0.0.1:${redirectPort}/`);
    assert.equal(ip.headers.location, `https://127.0.0.1:${apacheFront.port}/`);
    const bad = await send(`http://127.0.0.1:${redirectPort}/`, { headers: { host: 'evil.example/x' } });
    assert.equal(bad.status, 400);
  });

  // Last of this group: it replaces the certificate the others check.
  it('reloadTls: new connections get the new certificate, an open websocket keeps going; a bad one is refused', async () => {
    const both = [certA.pem, certB.pem];
    const c = await open(`wss://127.0.0.1:${apacheFront.port}/wsecho.php`, { ca: both, localAddress: CLIENT_IP });
    await c.text();
    const socket = (c.ws as unknown as { _socket: TLSSocket })._socket;
    assert.equal(socket.getPeerCertificate().fingerprint256, certA.fingerprint);

    // What certbot's deploy hook does: new files in place, then SIGHUP (daemon.reloadTls in cli.ts).
    await copyFile(certB.cert, path.join(tmp, 'live.crt'));
    await copyFile(certB.key, path.join(tmp, 'live.key'));
    assert.equal(await apacheFront.daemon.reloadTls(), true);
    const after = await send(`${base()}/hello.txt`, { ca: both });
    assert.equal(after.status, 200);
    assert.equal(after.fingerprint, certB.fingerprint);
    c.ws.send('still here');
    assert.equal(await c.text(), 'still here', 'the websocket opened with the old certificate still works');

    // A key that is not the certificate's: refused, one error line, B still served.
    await copyFile(certA.key, path.join(tmp, 'live.key'));
    assert.equal(await apacheFront.daemon.reloadTls(), false);
    assert.equal(codes(apacheFront, 'WSFPM_ERR_TLS_RELOAD'), 1);
    assert.equal((await send(`${base()}/hello.txt`, { ca: both })).fingerprint, certB.fingerprint);
    c.ws.send('and now');
    assert.equal(await c.text(), 'and now');
    c.ws.close(1000);
    await c.closed;
  });
});

describe('in front of nginx, over TLS (deploy/nginx/behind-wsfpm.conf, behind-wsfpm-php.conf)', () => {
  it('PHP behind sees the real client and https, never what the client claimed', async () => {
    const got = await send(`https://127.0.0.1:${nginxFront.port}/info.php`, { ca: [certA.pem], headers: forged });
    assert.equal(got.status, 200, got.body.toString());
    const seen = json(got);
    assert.equal(seen.REMOTE_ADDR, CLIENT_IP);
    assert.equal(seen.HTTPS, 'on');
    // Debian's fastcgi_params passes nginx's $host (no port) as HTTP_HOST.
    assert.equal(seen.HTTP_HOST, '127.0.0.1');
    assert.equal(seen.HTTP_X_FORWARDED_FOR, CLIENT_IP, 'nginx passes the header on: wsfpm\'s value alone');
  });

  it('a client that reaches nginx directly cannot claim another address or https', async () => {
    const seen = json(await send(`http://127.0.0.1:${nginxPort}/info.php`, { headers: { 'X-Forwarded-For': '6.6.6.6', 'X-Forwarded-Proto': 'https' } }));
    assert.equal(seen.REMOTE_ADDR, CLIENT_IP);
    assert.equal(seen.HTTPS, null);
  });
});

describe('in front of a Node site: headers, streaming, other upgrades', () => {
  const base = (): string => `http://127.0.0.1:${nodeFront.port}`;

  it('X-Forwarded-For/-Host/-Proto/-Port are wsfpm\'s alone (replaced, not appended); Host is kept', async () => {
    const got = await send(`${base()}/headers`, { headers: { ...forged, host: 'site.example:8443' } });
    const seen = json(got) as { headers: Record<string, string>; xffLines: number };
    assert.equal(seen.headers['x-forwarded-for'], CLIENT_IP);
    assert.equal(seen.xffLines, 1);
    assert.equal(seen.headers['x-forwarded-host'], 'site.example:8443');
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.equal(seen.headers['x-forwarded-port'], '8443');
    assert.equal(seen.headers.host, 'site.example:8443');
    assert.equal(seen.headers.forwarded, undefined);
    assert.equal(seen.headers['x-real-ip'], undefined);
  });

  it('request and response bodies stream: the site answers the first chunk before the client sends the second', async () => {
    const url = new URL(`${base()}/stream`);
    const received: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', localAddress: CLIENT_IP, agent: false }, (res) => {
        res.on('data', (c: Buffer) => {
          received.push(c.toString());
          // Only once the site's answer to the first chunk is back does the second chunk go out.
          if (received.join('') === 'got:one;') req.end('two');
        });
        res.on('end', resolve);
        res.on('error', reject);
      });
      req.on('error', reject);
      req.setTimeout(5000, () => req.destroy(new Error(`stalled with ${JSON.stringify(received)}: something buffers`)));
      req.write('one');
    });
    assert.equal(received.join(''), 'got:one;got:two;end');
  });

  it('Expect: 100-continue: answered by wsfpm, the body then reaches the site', async () => {
    const url = new URL(`${base()}/echo-body`);
    const seen = await new Promise<{ body: string; headers: Record<string, string> }>((resolve, reject) => {
      const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', localAddress: CLIENT_IP, agent: false, headers: { expect: '100-continue', 'content-length': '5' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString()) as { body: string; headers: Record<string, string> }));
      });
      req.on('continue', () => req.end('hello'));
      req.on('error', reject);
      req.setTimeout(5000, () => req.destroy(new Error('no 100 Continue')));
    });
    assert.equal(seen.body, 'hello');
    assert.equal(seen.headers.expect, undefined);
  });

  it('a response the site breaks off is cut for the client too, with one log line', async () => {
    const before = codes(nodeFront, 'WSFPM_ERR_UPSTREAM_DOWN');
    await assert.rejects(send(`${base()}/cut`), /aborted|socket hang up|ECONNRESET/);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(codes(nodeFront, 'WSFPM_ERR_UPSTREAM_DOWN'), before + 1);
  });

  it('a websocket that is not wsfpm\'s is tunnelled to the site with the same headers; --ws-paths decides', async () => {
    const other = await open(`ws://127.0.0.1:${nodeFront.port}/other/socket?x=1`, { localAddress: CLIENT_IP, headers: forged });
    const seen = JSON.parse(await other.text()) as { upstream: boolean; url: string; headers: Record<string, string> };
    assert.equal(seen.upstream, true);
    assert.equal(seen.url, '/other/socket?x=1');
    assert.equal(seen.headers['x-forwarded-for'], CLIENT_IP);
    assert.equal(seen.headers['x-forwarded-proto'], 'http');
    assert.equal(seen.headers.forwarded, undefined);
    other.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    assert.deepEqual([...(await other.next()).data], [1, 2, 3]);
    other.ws.close(1000);
    await other.closed;

    // A script under --root, but outside --ws-paths: the site's.
    const script = await open(`ws://127.0.0.1:${nodeFront.port}/wsecho.php`, { localAddress: CLIENT_IP });
    assert.equal((JSON.parse(await script.text()) as { upstream: boolean }).upstream, true);
    script.ws.close(1000);
    // Under --ws-paths: wsfpm's.
    const mine = await open(`ws://127.0.0.1:${nodeFront.port}/live/echo.php`, { localAddress: CLIENT_IP });
    mine.ws.send('hi');
    assert.equal(await mine.text(), 'live: hi');
    mine.ws.close(1000);
    await Promise.all([script.closed, mine.closed]);
  });

  it('an upgrade that is not a websocket (h2c) is served as a plain request, its body included', async () => {
    const get = await rawExchange(nodeFront.port, 'GET /headers HTTP/1.1\r\nHost: site.example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n');
    assert.match(get, /^HTTP\/1\.1 200 /);
    const seen = JSON.parse(get.slice(get.indexOf('\r\n\r\n') + 4)) as { headers: Record<string, string> };
    assert.equal(seen.headers.upgrade, undefined, 'the site never sees the Upgrade');
    assert.equal(seen.headers['x-forwarded-for'], CLIENT_IP);
    const post = await rawExchange(nodeFront.port, 'POST /echo-body HTTP/1.1\r\nHost: site.example\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 11\r\n\r\nhello world');
    assert.match(post, /^HTTP\/1\.1 200 /);
    assert.equal((JSON.parse(post.slice(post.indexOf('\r\n\r\n') + 4)) as { body: string }).body, 'hello world');
  });

  it('a request target Node lets through but cannot be passed on (`http://[::1/`) gets 400, and the daemon goes on', async () => {
    const before = codes(nodeFront, 'WSFPM_ERR_BAD_TARGET');
    const plain = await rawExchange(nodeFront.port, 'GET http://[::1/ HTTP/1.1\r\nHost: site.example\r\n\r\n');
    assert.match(plain, /^HTTP\/1\.1 400 /);
    assert.match(plain, /x-wsfpm-error: WSFPM_ERR_BAD_TARGET/i);
    const h2c = await rawExchange(nodeFront.port, 'GET http://[::1/ HTTP/1.1\r\nHost: site.example\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n');
    assert.match(h2c, /^HTTP\/1\.1 400 /);
    const ws = await rawExchange(nodeFront.port, 'GET http://[::1/other HTTP/1.1\r\nHost: site.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    assert.match(ws, /^HTTP\/1\.1 400 /);
    assert.equal(codes(nodeFront, 'WSFPM_ERR_BAD_TARGET'), before + 3);
    const after = await send(`${base()}/headers`);
    assert.equal(after.status, 200);
  });
});

describe('in front of nothing', () => {
  it('502 with a short page and one log line, for a page, a POST and a websocket', async () => {
    const before = codes(nowhere, 'WSFPM_ERR_UPSTREAM_DOWN');
    const got = await send(`http://127.0.0.1:${nowhere.port}/info.php`);
    assert.equal(got.status, 502);
    assert.equal(got.headers['x-wsfpm-error'], 'WSFPM_ERR_UPSTREAM_DOWN');
    assert.equal(got.body.toString(), '502 Bad Gateway\n');
    assert.equal(codes(nowhere, 'WSFPM_ERR_UPSTREAM_DOWN'), before + 1);
    const post = await send(`http://127.0.0.1:${nowhere.port}/upload.php`, { method: 'POST', body: randomBytes(100_000) });
    assert.equal(post.status, 502);
    const ws = await refusal(`ws://127.0.0.1:${nowhere.port}/not-a-script`, { localAddress: CLIENT_IP });
    assert.equal(ws.status, 502);
    assert.equal(ws.headers['x-wsfpm-error'], 'WSFPM_ERR_UPSTREAM_DOWN');
    assert.equal(codes(nowhere, 'WSFPM_ERR_UPSTREAM_DOWN'), before + 3);
    // wsfpm's own websockets do not need the site.
    const c = await open(`ws://127.0.0.1:${nowhere.port}/wsecho.php`, { localAddress: CLIENT_IP });
    assert.equal((JSON.parse(await c.text()) as { REMOTE_ADDR: string }).REMOTE_ADDR, CLIENT_IP);
    c.ws.close(1000);
    await c.closed;
  });
});

describe('standalone (--pages) over TLS', () => {
  it('a page, a static file and a websocket on the one TLS port', async () => {
    const base = `https://127.0.0.1:${standalone.port}`;
    const page = await send(`${base}/info.php`, { ca: [certA.pem] });
    assert.equal(page.status, 200);
    assert.equal(page.fingerprint, certA.fingerprint);
    assert.equal(json(page).HTTPS, 'on');
    assert.equal((await send(`${base}/hello.txt`, { ca: [certA.pem] })).body.toString(), 'hello static\n');
    const c = await open(`wss://127.0.0.1:${standalone.port}/wsecho.php`, { ca: certA.pem, localAddress: CLIENT_IP });
    assert.deepEqual(JSON.parse(await c.text()), { REMOTE_ADDR: CLIENT_IP, HTTPS: 'on' });
    c.ws.send('standalone');
    assert.equal(await c.text(), 'standalone');
    c.ws.close(1000);
    await c.closed;
  });
});

describe('docs/deploy.md', () => {
  it('quotes the behind-wsfpm files as they are', async () => {
    // Messages on assert.ok: without one, node:assert re-parses the (tsx-compiled, one-line) source to make one, for minutes.
    assert.ok((await docBlockCount('apacheconf')) >= 1, 'no ```apacheconf block');
    assert.deepEqual(await unquotedDocLines('apacheconf', [BEHIND_APACHE]), []);
    assert.ok((await docBlockCount('nginxconf')) >= 2, 'fewer than two ```nginxconf blocks');
    assert.deepEqual(await unquotedDocLines('nginxconf', [BEHIND_NGINX, BEHIND_NGINX_PHP]), []);
  });
});
