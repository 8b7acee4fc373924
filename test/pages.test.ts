/**
 * Standalone mode (--pages true) against a real php-fpm: PHP pages through
 * the FastCGI responder (forms, uploads, big bodies both ways, redirects with
 * cookies, errors), static files (ranges, caching, never PHP source,
 * dotfiles or anything outside the root), routing, and bad input refused
 * with a precise 4xx and a log line before it reaches PHP. Websockets keep
 * working on the same port.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { buildConfig } from '../src/config.ts';
import { ConfigError } from '../src/errors.ts';
import { type FpmPool } from '../src/fpm/pool.ts';
import { checkHost, pageLimits } from '../src/server/pages.ts';
import { FIXTURES, open, startDaemon, startPool } from './helpers/harness.ts';

type Daemon = Awaited<ReturnType<typeof startDaemon>>;

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PAGES = path.join(HERE, 'fixtures', 'pages');
const AUTOLOAD = path.resolve(HERE, '..', 'php', 'autoload.php');
const MiB = 1024 * 1024;

let pool: FpmPool;
/** Pages on, no front controller: precise 404s. */
let h: Daemon;
/** Pages on, front.php as the front controller. */
let hf: Daemon;
let tmp: string;
let root: string;
let hitsLog: string;
const data = randomBytes(100_000);

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

/** What big.php sends: a 64 KiB piece of 0123456789abcdef repeated, cut at n bytes. */
function pattern(n: number): Buffer {
  const out = Buffer.alloc(n);
  const piece = Buffer.from('0123456789abcdef'.repeat(4096));
  for (let off = 0; off < n; off += piece.length) piece.copy(out, off, 0, Math.min(piece.length, n - off));
  return out;
}

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'wsfpm-pages-'));
  root = path.join(tmp, 'www');
  hitsLog = path.join(tmp, 'hits.log');
  await cp(PAGES, root, { recursive: true });
  // What must never be served.
  const outside = path.join(tmp, 'outside');
  await mkdir(outside);
  await writeFile(path.join(outside, 'secret.txt'), 'outside-secret');
  await writeFile(path.join(root, '.env'), 'DB_PASSWORD=env-secret\n');
  await writeFile(path.join(root, '.htaccess'), 'Require all denied # htaccess-secret\n');
  await mkdir(path.join(root, '.git'));
  await writeFile(path.join(root, '.git', 'config'), '[remote] git-secret\n');
  await writeFile(path.join(root, 'secret.inc'), '<?php $password = "inc-secret";\n');
  await writeFile(path.join(root, 'source.phps'), '<?php $password = "phps-secret";\n');
  await writeFile(path.join(root, 'form.php.bak'), '<?php $password = "bak-secret";\n');
  await writeFile(path.join(root, 'form.php~'), '<?php $password = "tilde-secret";\n');
  await symlink(path.join(outside, 'secret.txt'), path.join(root, 'link-out.txt'));
  await symlink(outside, path.join(root, 'link-dir'));
  await symlink('hello.txt', path.join(root, 'link-in.txt'));
  await mkdir(path.join(root, 'empty'));
  await mkdir(path.join(root, '.well-known', 'acme-challenge'), { recursive: true });
  await writeFile(path.join(root, '.well-known', 'acme-challenge', 'token123'), 'token123.key');
  await writeFile(path.join(root, '.well-known', '.hidden'), 'wk-secret');
  await writeFile(path.join(root, 'data.bin'), data);
  await writeFile(path.join(root, 'with space.txt'), 'spaced out');
  // Websocket scripts, from the shared fixtures and the PHP library.
  await writeFile(path.join(root, 'echo.php'), `<?php require ${JSON.stringify(path.join(FIXTURES, 'echo.php'))};\n`);
  await writeFile(path.join(root, 'accept.php'), `<?php require ${JSON.stringify(AUTOLOAD)};\nWsfpm\\Connection::accept();\necho 'accepted';\n`);

  pool = await startPool(8, { post_max_size: '64M', upload_max_filesize: '32M' });
  h = await startDaemon(pool, { pages: 'true', root, index: '' });
  hf = await startDaemon(pool, { pages: 'true', root, index: 'front.php' });
});

after(async () => {
  await h?.close();
  await hf?.close();
  await pool?.stop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

interface Resp {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** The whole body arrived (false: the connection was cut mid-body). */
  complete: boolean;
}

interface RequestOptions {
  headers?: Record<string, string | string[]>;
  /** One Buffer: sent with Content-Length. An array: sent chunked, one chunk each. */
  body?: Buffer | Buffer[];
}

function request(port: number, method: string, target: string, options: RequestOptions = {}): Promise<Resp> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | string[]> = { ...options.headers };
    if (Buffer.isBuffer(options.body)) headers['content-length'] = String(options.body.length);
    const req = http.request({ host: '127.0.0.1', port, method, path: target, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let settled = false;
      const done = (): void => {
        if (settled) return;
        settled = true;
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), complete: res.complete });
      };
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', done);
      res.on('error', done);
      res.on('close', done);
    });
    req.on('error', reject);
    if (Array.isArray(options.body)) {
      for (const chunk of options.body) req.write(chunk);
      req.end();
    } else {
      req.end(options.body);
    }
  });
}

const get = (d: Daemon, target: string, headers: Record<string, string> = {}): Promise<Resp> => request(d.port, 'GET', target, { headers });
const json = (r: Resp): Record<string, unknown> => JSON.parse(r.body.toString('utf8')) as Record<string, unknown>;

/** Sends bytes as they are (no client-side normalization) and returns everything the server sent back. */
function rawHttp(port: number, bytes: string | Buffer, ms = 5000): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => s.destroy(), ms);
    s.on('connect', () => s.write(bytes));
    s.on('data', (d) => (got += d.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
}

const statusOf = (response: string): number => Number(/^HTTP\/1\.[01] (\d{3})/.exec(response)?.[1] ?? 0);

/** The log lines (pino JSON) with this code, written after `since`. */
function logged(d: Daemon, code: string, since = 0): Array<Record<string, unknown>> {
  return d.logs.slice(since).filter((l) => l.code === code);
}

async function hits(): Promise<string[]> {
  const text = await readFile(hitsLog, 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean);
}

describe('PHP pages', () => {
  it('a form POST reaches $_POST', async () => {
    const body = Buffer.from('name=J%C3%BCrgen&tags%5B%5D=a&tags%5B%5D=b&empty=');
    const r = await request(h.port, 'POST', '/form.php?x=1', { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
    assert.equal(r.status, 200);
    const out = json(r);
    assert.equal(out.method, 'POST');
    assert.deepEqual(out.post, { name: 'Jürgen', tags: ['a', 'b'], empty: '' });
    assert.deepEqual(out.get, { x: '1' });
    assert.equal(out.contentType, 'application/x-www-form-urlencoded');
    assert.equal(out.contentLength, String(body.length));
  });

  it('a multipart upload reaches $_FILES with the right size and content hash', async () => {
    const file = randomBytes(3 * MiB + 17);
    const form = new FormData();
    form.append('note', 'holiday photos');
    form.append('photo', new Blob([file], { type: 'image/jpeg' }), 'beach.jpg');
    form.append('empty', new Blob([]), 'empty.txt');
    const encoded = new Response(form);
    const body = Buffer.from(await encoded.arrayBuffer());
    const r = await request(h.port, 'POST', '/upload.php', { headers: { 'content-type': encoded.headers.get('content-type')! }, body });
    assert.equal(r.status, 200);
    const out = json(r) as { files: Record<string, { name: string; type: string; error: number; size: number; sha256: string }>; post: unknown };
    assert.deepEqual(out.post, { note: 'holiday photos' });
    assert.equal(out.files.photo?.name, 'beach.jpg');
    assert.equal(out.files.photo?.type, 'image/jpeg');
    assert.equal(out.files.photo?.error, 0);
    assert.equal(out.files.photo?.size, file.length);
    assert.equal(out.files.photo?.sha256, sha256(file));
    assert.equal(out.files.empty?.size, 0);
  });

  it('a 20 MB body streams into php://input intact, with its real CONTENT_LENGTH', async () => {
    const body = randomBytes(20 * MiB);
    const r = await request(h.port, 'POST', '/input.php', { headers: { 'content-type': 'application/octet-stream' }, body });
    assert.equal(r.status, 200);
    assert.deepEqual(json(r), { method: 'POST', length: body.length, sha256: sha256(body), contentLength: String(body.length), contentType: 'application/octet-stream' });
  });

  it('PUT without a Content-Type streams its body too', async () => {
    const body = randomBytes(200_000);
    const r = await request(h.port, 'PUT', '/input.php', { body });
    assert.deepEqual(json(r), { method: 'PUT', length: body.length, sha256: sha256(body), contentLength: String(body.length), contentType: null });
  });

  it('a chunked body (no Content-Length) is collected first: PHP gets its real length; the temp file is removed', async () => {
    const before = (await readdir(os.tmpdir())).filter((n) => n.startsWith('wsfpm-body-'));
    for (const size of [10_000, 3 * MiB + 5]) {
      const whole = randomBytes(size);
      const chunks: Buffer[] = [];
      for (let off = 0; off < whole.length; off += 256 * 1024) chunks.push(whole.subarray(off, off + 256 * 1024));
      const r = await request(h.port, 'POST', '/input.php', { headers: { 'content-type': 'application/octet-stream' }, body: chunks });
      assert.equal(r.status, 200, `chunked ${size}`);
      assert.deepEqual(json(r), { method: 'POST', length: size, sha256: sha256(whole), contentLength: String(size), contentType: 'application/octet-stream' });
    }
    const left = (await readdir(os.tmpdir())).filter((n) => n.startsWith('wsfpm-body-') && !before.includes(n));
    assert.deepEqual(left, [], 'spooled bodies are deleted');
  });

  it('an empty GET has CONTENT_LENGTH 0 and no CONTENT_TYPE; PHP sees the superglobals a page has under Apache', async () => {
    const r = await get(h, '/server.php/extra/path?a=1&b=two', {
      cookie: 'x=1; y=2',
      'x-custom': 'hi',
      proxy: 'http://evil.example:3128',
      'accept-encoding': 'gzip',
      X_Forwarded_For: '6.6.6.6',
    });
    assert.equal(r.status, 200);
    const info = json(r);
    assert.equal(info.REQUEST_METHOD, 'GET');
    assert.equal(info.CONTENT_LENGTH, '0');
    assert.equal(info.CONTENT_TYPE, null);
    assert.equal(info.REQUEST_URI, '/server.php/extra/path?a=1&b=two');
    assert.equal(info.QUERY_STRING, 'a=1&b=two');
    assert.deepEqual(info._GET, { a: '1', b: 'two' });
    assert.deepEqual(info._COOKIE, { x: '1', y: '2' });
    assert.equal(info.SCRIPT_NAME, '/server.php');
    assert.equal(info.PATH_INFO, '/extra/path');
    assert.equal(info.PHP_SELF, '/server.php/extra/path');
    assert.equal(info.SCRIPT_FILENAME, path.join(root, 'server.php'));
    assert.equal(info.REMOTE_ADDR, '127.0.0.1');
    assert.equal(info.HTTPS, null);
    assert.equal(info.HTTP_HOST, `127.0.0.1:${h.port}`);
    assert.equal(info.SERVER_PORT, String(h.port));
    assert.equal(info.HTTP_X_CUSTOM, 'hi');
    assert.equal(info.HTTP_ACCEPT_ENCODING, 'gzip', 'a page may compress its own output');
    assert.equal(info.HTTP_PROXY, null, 'httpoxy');
    assert.equal(info.HTTP_X_FORWARDED_FOR, null, 'a header name with _ must not become HTTP_X_FORWARDED_FOR');
    assert.equal(info.WSFPM_PROTOCOL, null, 'a page is not a websocket');
    assert.equal(info.WSFPM_CONNECTION_ID, null);
    // The control API's address and token reach every page, so Wsfpm\Client works whatever the pool.
    assert.equal(info.WSFPM_CONTROL, h.daemon.control!.address);
    assert.equal(info.WSFPM_CONTROL_TOKEN, h.daemon.control!.token);
  });

  it('behind a trusted proxy, REMOTE_ADDR and HTTPS come from X-Forwarded-*', async () => {
    const info = json(await get(h, '/server.php', { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'www.example.com' }));
    assert.equal(info.REMOTE_ADDR, '203.0.113.9');
    assert.equal(info.HTTPS, 'on');
    assert.equal(info.HTTP_HOST, 'www.example.com');
    assert.equal(info.SERVER_PORT, '443');
  });

  it('a PHP redirect keeps its status, Location and both Set-Cookie headers', async () => {
    const r = await get(h, '/redirect.php');
    assert.equal(r.status, 302);
    assert.equal(r.headers.location, '/welcome.php?from=login');
    const cookies = r.headers['set-cookie'] ?? [];
    assert.equal(cookies.length, 2, JSON.stringify(cookies));
    assert.match(cookies[0]!, /^session=abc123; path=\/; HttpOnly$/);
    assert.match(cookies[1]!, /^theme=dark; path=\/$/);
  });

  it('a PHP page that dies is a 500 whose body does not contain the error (php-fpm sends it empty); the log has it', async () => {
    const since = h.logs.length;
    for (const target of ['/error.php', '/error.php?kind=fatal']) {
      const r = await get(h, target);
      assert.equal(r.status, 500, target);
      assert.doesNotMatch(r.body.toString('latin1'), /secret|7f3a|RuntimeException|Fatal/, target);
      assert.equal(r.body.length, 0, `${target}: php-fpm with display_errors off sends no body`);
    }
    const stderr = h.logs.slice(since).map((l) => String(l.stderr ?? '')).join('\n');
    assert.match(stderr, /secret-pages-error-text-7f3a/, 'the error text goes to the daemon log');
    assert.match(stderr, /wsfpm_pages_no_such_function_secret_7f3a/);
  });

  it('a websocket script opened as a page is a 500 (accept() refuses without WSFPM_PROTOCOL)', async () => {
    const r = await get(h, '/accept.php');
    assert.equal(r.status, 500);
    assert.doesNotMatch(r.body.toString(), /accepted|WSFPM_PROTOCOL/);
  });

  it('HEAD on a PHP page: the status and headers, no body', async () => {
    const r = await request(h.port, 'HEAD', '/redirect.php');
    assert.equal(r.status, 302);
    assert.equal(r.headers['set-cookie']?.length, 2);
    assert.equal(r.body.length, 0);
  });

  it('PHP output streams out intact (16 MB)', async () => {
    const n = 16 * MiB + 3;
    const r = await get(h, `/big.php?n=${n}`);
    assert.equal(r.status, 200);
    assert.equal(r.body.length, n);
    assert.equal(sha256(r.body), sha256(pattern(n)));
  });

  it('a client that stops reading holds PHP back (backpressure out), and gets every byte', async () => {
    const n = 48 * MiB;
    const mark = path.join(tmp, 'big-done.txt');
    await rm(mark, { force: true });
    let resumedAt = 0;
    const got = await new Promise<{ length: number; hash: string }>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: h.port, path: `/big.php?n=${n}&mark=1`, agent: false }, (res) => {
        res.pause();
        setTimeout(() => {
          const hash = createHash('sha256');
          let length = 0;
          res.on('data', (c: Buffer) => {
            length += c.length;
            hash.update(c);
          });
          res.on('end', () => resolve({ length, hash: hash.digest('hex') }));
          resumedAt = Date.now() / 1000;
          res.resume();
        }, 1000);
      });
      req.on('error', reject);
    });
    assert.deepEqual(got, { length: n, hash: sha256(pattern(n)) });
    const doneAt = Number(await readFile(mark, 'utf8'));
    // Without backpressure the daemon would take all 48 MB at once and PHP would finish within
    // milliseconds; with it, PHP can only finish after the client started reading again.
    assert.ok(doneAt >= resumedAt - 0.05, `PHP finished ${(resumedAt - doneAt).toFixed(3)} s before the client resumed`);
  });

  it('a PHP script that does not read yet holds the client back (backpressure in)', async () => {
    // A PUT body is read by PHP only when the script reads php://input, here after 1.5 s.
    const size = 48 * MiB;
    const body = randomBytes(size);
    let sentBySleepEnd = -1;
    const result = new Promise<Resp>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: h.port, method: 'PUT', path: '/input.php?wait=1500', headers: { 'content-length': String(size) }, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), complete: res.complete }));
      });
      req.on('error', reject);
      let off = 0;
      let accepted = 0;
      const pump = (): void => {
        while (off < size) {
          const chunk = body.subarray(off, off + 64 * 1024);
          off += chunk.length;
          const ok = req.write(chunk, () => (accepted += chunk.length));
          if (!ok) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
      setTimeout(() => (sentBySleepEnd = accepted), 1000);
    });
    const r = await result;
    assert.deepEqual(json(r), { method: 'PUT', length: size, sha256: sha256(body), contentLength: String(size), contentType: null });
    // Kernel socket buffers take some megabytes; the daemon must not take the rest.
    assert.ok(sentBySleepEnd >= 0 && sentBySleepEnd < 24 * MiB, `${(sentBySleepEnd / MiB).toFixed(1)} MiB accepted while PHP was not reading`);
  });

  it('a Content-Length from PHP is kept and held to exactly', async () => {
    const exact = await get(h, '/length.php?send=10');
    assert.equal(exact.headers['content-length'], '10');
    assert.equal(exact.body.toString(), 'x'.repeat(10));
    const long = await get(h, '/length.php?send=25');
    assert.equal(long.body.toString(), 'x'.repeat(10), 'extra bytes are dropped, never sent past the declared length');
    assert.ok(long.complete);
    const short = await get(h, '/length.php?send=4');
    // Never a response that leaves the client waiting for bytes that will not come: a 502 when
    // nothing was sent yet (as here: it all arrives at once), else the connection is closed mid-body.
    assert.ok(short.status === 502 || !short.complete, `status ${short.status}, complete ${short.complete}`);
    assert.equal(short.status, 502);
  });

  it('php-fpm unreachable: 502 and a log line', async () => {
    const down = await startDaemon(pool, { pages: 'true', root, index: '', fpm: `unix:${path.join(tmp, 'no-such.sock')}` });
    try {
      const r = await get(down, '/form.php');
      assert.equal(r.status, 502);
      assert.equal(logged(down, 'WSFPM_ERR_FPM_UNREACHABLE').length, 1);
      // Static files do not need PHP.
      assert.equal((await get(down, '/hello.txt')).status, 200);
    } finally {
      await down.close();
    }
  });

  it('no header block within the page timeout: 504 and a log line', async () => {
    const saved = pageLimits.headTimeout;
    pageLimits.headTimeout = 300;
    try {
      const since = h.logs.length;
      const r = await get(h, '/slow.php?ms=1500');
      assert.equal(r.status, 504);
      assert.equal(logged(h, 'WSFPM_ERR_PAGE_TIMEOUT', since).length, 1);
    } finally {
      pageLimits.headTimeout = saved;
    }
    assert.equal((await get(h, '/slow.php?ms=10')).body.toString(), 'finally');
  });
});

describe('static files', () => {
  it('a static file with its content type, ETag and Last-Modified; 304 on If-None-Match and If-Modified-Since', async () => {
    const r = await get(h, '/hello.txt');
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'hello, static world\n');
    assert.match(String(r.headers['content-type']), /^text\/plain/);
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
    const etag = r.headers.etag;
    assert.ok(etag, 'ETag');
    assert.ok(r.headers['last-modified'], 'Last-Modified');
    assert.equal(r.headers['accept-ranges'], 'bytes');
    const again = await get(h, '/hello.txt', { 'if-none-match': etag });
    assert.equal(again.status, 304);
    assert.equal(again.body.length, 0);
    const since = await get(h, '/hello.txt', { 'if-modified-since': r.headers['last-modified']! });
    assert.equal(since.status, 304);
    assert.match(String((await get(h, '/style.css')).headers['content-type']), /^text\/css/);
    assert.equal((await get(h, '/with%20space.txt')).body.toString(), 'spaced out');
  });

  it('Range: 206 with Content-Range and exactly those bytes; 416 past the end', async () => {
    const r = await get(h, '/data.bin', { range: 'bytes=1000-1999' });
    assert.equal(r.status, 206);
    assert.equal(r.headers['content-range'], `bytes 1000-1999/${data.length}`);
    assert.equal(r.headers['content-length'], '1000');
    assert.ok(r.body.equals(data.subarray(1000, 2000)));
    const tail = await get(h, '/data.bin', { range: 'bytes=-500' });
    assert.equal(tail.status, 206);
    assert.ok(tail.body.equals(data.subarray(data.length - 500)));
    const past = await get(h, '/data.bin', { range: `bytes=${data.length + 10}-` });
    assert.equal(past.status, 416);
  });

  it('HEAD on a static file: its length, no body', async () => {
    const r = await request(h.port, 'HEAD', '/data.bin');
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-length'], String(data.length));
    assert.equal(r.body.length, 0);
  });

  it('a method other than GET/HEAD on a static file is 405 with Allow', async () => {
    const r = await request(h.port, 'POST', '/hello.txt', { body: Buffer.from('x') });
    assert.equal(r.status, 405);
    assert.equal(r.headers.allow, 'GET, HEAD');
  });

  it('.php source is never served as a static file, in any spelling', async () => {
    const page = await get(h, '/form.php');
    assert.equal(page.status, 200);
    assert.doesNotMatch(page.body.toString(), /<\?php/, 'a .php file is run, not sent');
    assert.equal((await get(h, '/form%2ephp')).status, 200, 'an encoded dot still runs the script');
    assert.doesNotMatch((await get(h, '/form%2ephp')).body.toString(), /<\?php/);
    for (const target of ['/form.php.bak', '/form.php~', '/secret.inc', '/source.phps', '/form.php%00.txt', '/FORM.PHP']) {
      const r = await get(h, target);
      assert.equal(r.status, 404, target);
      assert.doesNotMatch(r.body.toString(), /<\?php|secret/, target);
    }
  });

  it('dotfiles are never served', async () => {
    for (const target of ['/.env', '/.htaccess', '/.git/config', '/%2eenv', '/.git/', '/.git', '/.well-known/.hidden', '/.well-known/acme-challenge/../.hidden']) {
      const r = await get(h, target);
      assert.equal(r.status, 404, target);
      assert.doesNotMatch(r.body.toString(), /secret/, target);
      // With a front controller they reach PHP's front.php, never the file.
      const f = await get(hf, target);
      assert.doesNotMatch(f.body.toString(), /secret/, `${target} with a front controller`);
    }
  });

  it('.well-known is the one dot directory served (RFC 8615, ACME challenges)', async () => {
    const r = await get(h, '/.well-known/acme-challenge/token123');
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'token123.key');
  });

  it('symlinks that leave the root are refused; those inside it are followed', async () => {
    for (const target of ['/link-out.txt', '/link-dir/secret.txt', '/link-dir/']) {
      const r = await get(h, target);
      assert.equal(r.status, 404, target);
      assert.doesNotMatch(r.body.toString(), /outside-secret/, target);
    }
    const inside = await get(h, '/link-in.txt');
    assert.equal(inside.status, 200);
    assert.equal(inside.body.toString(), 'hello, static world\n');
  });

  it('directories: index.php, then index.html; a 301 adds the missing slash; otherwise the front controller or 404', async () => {
    assert.equal((await get(h, '/php-dir/')).body.toString(), 'php-dir index.php');
    assert.match((await get(h, '/html-dir/')).body.toString(), /html-dir index\.html/);
    assert.equal((await get(h, '/both/')).body.toString(), 'both: index.php wins');
    const slash = await get(h, '/html-dir?x=1');
    assert.equal(slash.status, 301);
    assert.equal(slash.headers.location, '/html-dir/?x=1');
    assert.equal((await get(h, '/php-dir')).headers.location, '/php-dir/');
    assert.equal((await get(h, '//php-dir')).headers.location, '/php-dir/', 'never a protocol-relative Location');
    assert.equal((await request(h.port, 'POST', '/php-dir', { body: Buffer.alloc(0) })).body.toString(), 'php-dir index.php', 'no redirect for a POST');
    assert.equal((await get(h, '/empty/')).status, 404);
    assert.equal((await get(h, '/')).status, 404);
    assert.equal((await get(hf, '/empty/')).body.toString(), 'front controller for /empty/');
  });

  it('paths with no file and no script go to the front controller, else 404', async () => {
    const r = await get(hf, '/blog/2024/hello?page=2');
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'front controller for /blog/2024/hello?page=2');
    assert.equal((await request(hf.port, 'DELETE', '/api/items/7')).body.toString(), 'front controller for /api/items/7');
    const since = h.logs.length;
    assert.equal((await get(h, '/blog/2024/hello')).status, 404);
    assert.equal(logged(h, 'WSFPM_ERR_NOT_FOUND', since).length, 1);
    assert.equal((await get(hf, '/' + 'a'.repeat(3000))).body.toString().length, 'front controller for /'.length + 3000, 'long paths are routed');
  });
});

describe('bad input: a precise 4xx and a log line, never PHP', () => {
  const control = 'GET /hit.php?control HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n';

  it('the control request does reach PHP', async () => {
    const response = await rawHttp(h.port, control);
    assert.equal(statusOf(response), 200);
    assert.deepEqual(await hits(), ['GET /hit.php?control']);
  });

  it('oversized request headers: 431', async () => {
    const since = h.logs.length;
    const response = await rawHttp(h.port, `GET /hit.php HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(20_000)}\r\nConnection: close\r\n\r\n`);
    assert.equal(statusOf(response), 431);
    const lines = logged(h, 'WSFPM_ERR_BAD_REQUEST', since);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.status, 431);
  });

  it('an invalid or repeated Host header: 400', async () => {
    for (const host of ['evil.example/x', 'a b', 'user@evil.example', 'evil.example:80:80', '', 'exa\tmple']) {
      const since = h.logs.length;
      const response = await rawHttp(h.port, `GET /hit.php HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      assert.equal(statusOf(response), 400, JSON.stringify(host));
      assert.equal(logged(h, 'WSFPM_ERR_BAD_HOST', since).length, 1, JSON.stringify(host));
    }
    const since = h.logs.length;
    const twice = await rawHttp(h.port, 'GET /hit.php HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n');
    assert.equal(statusOf(twice), 400);
    assert.equal(logged(h, 'WSFPM_ERR_BAD_HOST', since).length, 1);
    const post = await rawHttp(h.port, 'POST /hit.php HTTP/1.1\r\nHost: a/b\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc');
    assert.equal(statusOf(post), 400);
  });

  it('request smuggling: Content-Length with Transfer-Encoding, two Content-Lengths, a bad Transfer-Encoding: 400', async () => {
    const attempts = [
      'POST /hit.php HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hit.php?smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',
      'POST /hit.php HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n',
      'POST /hit.php HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc',
      'POST /hit.php HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
      'POST /hit.php HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n',
      'POST /hit.php HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n',
    ];
    for (const attempt of attempts) {
      const since = h.logs.length;
      const response = await rawHttp(h.port, attempt);
      assert.equal(statusOf(response), 400, JSON.stringify(attempt.slice(0, 90)));
      assert.equal(response.match(/HTTP\/1\.1 /g)?.length, 1, 'exactly one response: nothing smuggled through');
      const lines = logged(h, 'WSFPM_ERR_BAD_REQUEST', since);
      assert.equal(lines.length, 1, JSON.stringify(attempt.slice(0, 90)));
      assert.equal(lines[0]!.status, 400);
    }
  });

  it('a path with encoded traversal: 404', async () => {
    for (const target of ['/%2e%2e/hits.log', '/..%2fhits.log', '/%2e%2e%2f%2e%2e%2fetc%2fpasswd', '/../../etc/passwd', '/php-dir/..%2f..%2fhits.log', '/%2e%2e%5chits.log', '/hit.php/..%2f..%2fx', '/a/%2E%2E/hit.php', '/hit.php%00']) {
      for (const d of [h, hf]) {
        const since = d.logs.length;
        const response = await rawHttp(d.port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
        assert.equal(statusOf(response), 404, target);
        assert.doesNotMatch(response, /root:|control/, target);
        assert.equal(logged(d, 'WSFPM_ERR_NOT_FOUND', since).length, 1, target);
      }
    }
  });

  it('a chunked body over the limit: 413', async () => {
    const saved = pageLimits.chunkedBodyLimit;
    pageLimits.chunkedBodyLimit = 256 * 1024;
    try {
      const since = h.logs.length;
      const r = await request(h.port, 'POST', '/hit.php', { headers: { 'content-type': 'application/octet-stream' }, body: [randomBytes(200_000), randomBytes(200_000)] }).catch((err: Error) => err);
      assert.ok(!(r instanceof Error), `the 413 arrives: ${String(r)}`);
      assert.equal(r.status, 413);
      assert.equal(logged(h, 'WSFPM_ERR_BODY_TOO_LARGE', since).length, 1);
    } finally {
      pageLimits.chunkedBodyLimit = saved;
    }
  });

  it('none of them reached PHP', async () => {
    assert.deepEqual(await hits(), ['GET /hit.php?control']);
  });
});

describe('the same port', () => {
  it('still carries websockets', async () => {
    const c = await open(`ws://127.0.0.1:${h.port}/echo.php`);
    c.ws.send('over the page port');
    assert.equal(await c.text(), 'over the page port');
    c.ws.close();
    await c.closed;
  });

  it('without --pages, a plain GET is still 426', async () => {
    const off = await startDaemon(pool, { root });
    try {
      const r = await get(off, '/hello.txt');
      assert.equal(r.status, 426);
      assert.equal((await request(off.port, 'POST', '/form.php', { body: Buffer.from('a=1') })).status, 404);
    } finally {
      await off.close();
    }
  });
});

describe('--pages and Host checks', () => {
  const build = (flags: Record<string, string>, env: NodeJS.ProcessEnv = {}) => buildConfig(flags, env, '/srv/site');

  it('parses true/false, 1/0, yes/no from the flag and WSFPM_PAGES; default false', () => {
    assert.equal(build({}).pages, false);
    for (const v of ['true', '1', 'yes', 'TRUE', ' Yes ']) assert.equal(build({ pages: v }).pages, true, v);
    for (const v of ['false', '0', 'no', 'No']) assert.equal(build({ pages: v }).pages, false, v);
    assert.equal(build({}, { WSFPM_PAGES: '1' }).pages, true);
    assert.equal(build({}, { WSFPM_PAGES: '' }).pages, false, 'an empty variable counts as unset');
    for (const [flags, env, where] of [[{ pages: 'maybe' }, {}, '--pages="maybe"'], [{}, { WSFPM_PAGES: 'on' }, 'WSFPM_PAGES="on"']] as const) {
      assert.throws(() => build({ ...flags }, { ...env }), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.ok(err.message.includes(where), err.message);
        assert.ok(err.message.includes('(--pages / WSFPM_PAGES)'), err.message);
        assert.match(err.message, /expected true or false/);
        return true;
      });
    }
  });

  it('checkHost', () => {
    const host = (...values: string[]): string | null => checkHost(values.flatMap((v) => ['Host', v]));
    for (const ok of ['example.com', 'example.com:8080', '127.0.0.1', '[::1]:8740', 'my_host.local', 'xn--bcher-kva.example']) assert.equal(host(ok), null, ok);
    for (const bad of ['', 'a b', 'evil.example/x', 'u@evil.example', 'a:1:2', '[::1', 'x:123456', 'a'.repeat(256)]) assert.ok(host(bad), bad);
    assert.ok(host('a.example', 'a.example'), 'two Host headers');
    assert.equal(checkHost([]), null, 'HTTP/1.0 without Host');
  });
});

describe('regressions', () => {
  it('an h2c upgrade request to a page gets the page, not a websocket refusal', async () => {
    const r = await rawHttp(h.port, `GET /hit.php HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n`);
    assert.equal(statusOf(r), 200);
  });
});
