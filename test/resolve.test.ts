/**
 * URL path → script (src/server/resolve.ts) against a real temporary tree
 * with symlinks pointing inside and outside the root, and the pre-PHP
 * upgrade checks (src/server/handshake.ts).
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { checkHandshake, checkOrigin, parseOriginList } from '../src/server/handshake.ts';
import { Resolver, safeDecode, type ResolvedScript } from '../src/server/resolve.ts';

describe('safeDecode', () => {
  test('decodes percent-escapes, including UTF-8', () => {
    assert.equal(safeDecode('/'), '/');
    assert.equal(safeDecode('/a.php'), '/a.php');
    assert.equal(safeDecode('/with%20space.php'), '/with space.php');
    assert.equal(safeDecode('/caf%C3%A9.php'), '/café.php');
    assert.equal(safeDecode('/%E2%82%AC/x'), '/€/x');
    assert.equal(safeDecode('/a%2Fb'), '/a/b');
    assert.equal(safeDecode('/a/.../b'), '/a/.../b', '"..." is an ordinary name');
    assert.equal(safeDecode('/a/..b/c.'), '/a/..b/c.');
  });

  test('decodes once: double-encoded dots stay literal', () => {
    assert.equal(safeDecode('/%252e%252e/a.php'), '/%2e%2e/a.php');
  });

  test('refuses . and .. segments, raw or encoded', () => {
    for (const p of ['/..', '/../etc/passwd', '/a/../b.php', '/a/..', '/.', '/./a.php', '/a/.', '/%2e%2e/x', '/%2E%2E/x', '/%2e./x', '/.%2e/x', '/%2e/x', '/a%2f..%2fb', '/a%2F..%2Fb', '/a/%2e%2e%2fb']) {
      assert.equal(safeDecode(p), null, p);
    }
  });

  test('refuses NUL and backslashes, raw or encoded', () => {
    for (const p of ['/a.php%00', '/a.php%00.txt', '/%00', '/a\0.php', '/a\\b.php', '/a%5cb.php', '/a%5C..%5Cb', '/..\\x']) {
      assert.equal(safeDecode(p), null, JSON.stringify(p));
    }
  });

  test('refuses malformed escapes and paths not starting with /', () => {
    for (const p of ['/%', '/%zz', '/%E2%82', '/%C0%AE%C0%AE/x', '/%ff', '', 'a.php', '*', 'http://x/a.php', '%2fa.php']) {
      assert.equal(safeDecode(p), null, p);
    }
  });
});

describe('Resolver', () => {
  let base = '';
  let root = ''; // real path of the document root
  let outside = '';

  before(async () => {
    base = await realpath(await mkdtemp(path.join(os.tmpdir(), 'wsfpm-resolve-')));
    root = path.join(base, 'root');
    outside = path.join(base, 'outside');
    const files: Record<string, string> = {
      'root/index.php': '',
      'root/a.php': '',
      'root/café.php': '',
      'root/with space.php': '',
      'root/secret.txt': 'secret',
      'root/notphp.php.txt': '',
      'root/sub/index.php': '',
      'root/sub/page.php': '',
      'root/dir.php/index.php': '', // a directory whose name ends in .php
      'root/noindex/readme.txt': '',
      'root/app/front.php': '',
      'outside/evil.php': '',
      'outside/index.php': '',
      'root2/x.php': '', // a sibling whose name starts with the root's
    };
    for (const [rel, body] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(base, rel)), { recursive: true });
      await writeFile(path.join(base, rel), body);
    }
    await symlink(path.join(root, 'a.php'), path.join(root, 'link-in.php')); // inside → inside
    await symlink('sub', path.join(root, 'sublink')); // relative dir link, inside
    await symlink(path.join(outside, 'evil.php'), path.join(root, 'link-out.php')); // file → outside
    await symlink('../outside/evil.php', path.join(root, 'rel-out.php')); // relative file link → outside
    await symlink(outside, path.join(root, 'outdir')); // dir → outside
    await symlink(path.join(base, 'root2', 'x.php'), path.join(root, 'sibling.php')); // → /…/root2, shares the prefix
    await symlink(path.join(root, 'missing.php'), path.join(root, 'dangling.php'));
    await symlink('loop.php', path.join(root, 'loop.php'));
  });

  after(async () => {
    if (base) await rm(base, { recursive: true, force: true });
  });

  const resolver = (index = '', routes: Array<[string, string]> = []): Resolver => new Resolver({ root, index, routes: new Map(routes) });
  const script = (scriptName: string, file: string, pathInfo = ''): ResolvedScript => ({
    documentRoot: root,
    filename: path.join(root, file),
    scriptName,
    pathInfo,
  });

  test('a .php file', async () => {
    const r = resolver();
    assert.deepEqual(await r.resolve('/a.php'), script('/a.php', 'a.php'));
    assert.deepEqual(await r.resolve('/sub/page.php'), script('/sub/page.php', 'sub/page.php'));
  });

  test('PATH_INFO after the .php segment', async () => {
    const r = resolver();
    assert.deepEqual(await r.resolve('/a.php/foo/bar'), script('/a.php', 'a.php', '/foo/bar'));
    assert.deepEqual(await r.resolve('/a.php/'), script('/a.php', 'a.php', '/'));
    assert.deepEqual(await r.resolve('/sub/page.php/x.php'), script('/sub/page.php', 'sub/page.php', '/x.php'));
    assert.deepEqual(await r.resolve('/a.php/x%2Fy'), script('/a.php', 'a.php', '/x/y'));
    assert.deepEqual(await r.resolve('/a.php/caf%C3%A9'), script('/a.php', 'a.php', '/café'));
  });

  test('the first existing .php segment wins; a missing one is skipped', async () => {
    const r = resolver();
    assert.deepEqual(await r.resolve('/nope.php/a.php'), null, 'only prefixes count: /nope.php/a.php is not /a.php');
    assert.deepEqual(await r.resolve('/sub/nope.php/more'), null);
  });

  test('percent-encoded and non-ASCII names', async () => {
    const r = resolver();
    assert.deepEqual(await r.resolve('/caf%C3%A9.php'), script('/café.php', 'café.php'));
    assert.deepEqual(await r.resolve('/with%20space.php'), script('/with space.php', 'with space.php'));
    assert.deepEqual(await r.resolve('/%61.php'), script('/a.php', 'a.php'));
  });

  test('directory index.php', async () => {
    const r = resolver();
    assert.deepEqual(await r.resolve('/'), script('/index.php', 'index.php'));
    assert.deepEqual(await r.resolve('/sub'), script('/sub/index.php', 'sub/index.php'));
    assert.deepEqual(await r.resolve('/sub/'), script('/sub/index.php', 'sub/index.php'));
    assert.deepEqual(await r.resolve('/dir.php'), script('/dir.php/index.php', 'dir.php/index.php'), 'a directory named *.php is not a script');
    assert.equal(await r.resolve('/noindex/'), null);
  });

  test('repeated slashes are collapsed in SCRIPT_NAME', async () => {
    const r = resolver();
    assert.deepEqual(await r.resolve('//a.php'), script('/a.php', 'a.php'));
    assert.deepEqual(await r.resolve('/sub//page.php'), script('/sub/page.php', 'sub/page.php'));
  });

  test('missing files and non-.php files are refused', async () => {
    const r = resolver();
    for (const p of ['/missing.php', '/secret.txt', '/notphp.php.txt', '/sub/index', '/noindex/readme.txt', '/A.PHP', '/sub/page.php.bak']) {
      assert.equal(await r.resolve(p), null, p);
    }
  });

  test('traversal attempts are refused', async () => {
    const r = resolver('index.php');
    for (const p of [
      '/../outside/evil.php',
      '/%2e%2e/outside/evil.php',
      '/%2E%2E/outside/evil.php',
      '/sub/../../outside/evil.php',
      '/sub%2f..%2f..%2foutside%2fevil.php',
      '/sub/%2e%2e/%2e%2e/outside/evil.php',
      '/a.php/../../outside/evil.php',
      '/./a.php',
      '/a.php%00.txt',
      '/a.php%00',
      '/sub%5c..%5ca.php',
      '/sub\\..\\a.php',
      '/%zz',
    ]) {
      assert.equal(await r.resolve(p), null, `${p} must be refused even with a front controller`);
    }
  });

  test('symlinks inside the root are followed; filename is the real path', async () => {
    const r = resolver();
    assert.deepEqual(await r.resolve('/link-in.php'), { documentRoot: root, filename: path.join(root, 'a.php'), scriptName: '/link-in.php', pathInfo: '' });
    assert.deepEqual(await r.resolve('/sublink/page.php/x'), { documentRoot: root, filename: path.join(root, 'sub/page.php'), scriptName: '/sublink/page.php', pathInfo: '/x' });
  });

  test('symlinks that lead out of the root are refused', async () => {
    const r = resolver();
    for (const p of ['/link-out.php', '/rel-out.php', '/outdir/evil.php', '/outdir/evil.php/x', '/outdir/', '/outdir', '/sibling.php']) {
      assert.equal(await r.resolve(p), null, p);
    }
  });

  test('dangling and looping symlinks are refused', async () => {
    const r = resolver();
    assert.equal(await r.resolve('/dangling.php'), null);
    assert.equal(await r.resolve('/loop.php'), null);
  });

  test('front controller for paths with no script of their own', async () => {
    const front = script('/app/front.php', 'app/front.php');
    for (const index of ['app/front.php', '/app/front.php']) {
      const r = resolver(index);
      assert.deepEqual(await r.resolve('/anything/here'), front);
      assert.deepEqual(await r.resolve('/missing.php'), front);
      assert.deepEqual(await r.resolve('/noindex/'), front);
      assert.deepEqual(await r.resolve('/secret.txt'), front, 'a non-.php file is never served itself');
      // Symlinks out of the root fall through to the front controller, never to their target.
      assert.deepEqual(await r.resolve('/link-out.php'), front);
      assert.deepEqual(await r.resolve('/outdir/evil.php'), front);
      // Real scripts and directory indexes still come first.
      assert.deepEqual(await r.resolve('/a.php/x'), script('/a.php', 'a.php', '/x'));
      assert.deepEqual(await r.resolve('/sub/'), script('/sub/index.php', 'sub/index.php'));
    }
  });

  test('a front controller that is missing, not .php, or outside the root resolves to nothing', async () => {
    for (const index of ['nope.php', 'secret.txt', 'link-out.php', '../outside/evil.php']) {
      assert.equal(await resolver(index).resolve('/anything'), null, index);
    }
  });

  test('explicit routes match the exact decoded path, before the file system', async () => {
    const r = resolver('', [
      ['/chat', 'sub/page.php'],
      ['/a.php', 'app/front.php'],
      ['/abs', '/sub/page.php'],
    ]);
    assert.deepEqual(await r.resolve('/chat'), script('/sub/page.php', 'sub/page.php'));
    assert.deepEqual(await r.resolve('/ch%61t'), script('/sub/page.php', 'sub/page.php'));
    assert.deepEqual(await r.resolve('/a.php'), script('/app/front.php', 'app/front.php'), 'a route shadows a real file');
    assert.deepEqual(await r.resolve('/abs'), script('/sub/page.php', 'sub/page.php'));
    assert.equal(await r.resolve('/chat/more'), null, 'routes are exact, no PATH_INFO');
    assert.equal(await r.resolve('/chat/'), null);
  });

  test('routes to bad targets resolve to nothing', async () => {
    const r = resolver('index.php', [
      ['/evil', 'link-out.php'],
      ['/up', '../outside/evil.php'],
      ['/txt', 'secret.txt'],
      ['/gone', 'gone.php'],
    ]);
    for (const p of ['/evil', '/up', '/txt', '/gone']) assert.equal(await r.resolve(p), null, p);
  });

  test('a root that does not exist resolves nothing', async () => {
    const r = new Resolver({ root: path.join(base, 'no-such-root'), index: 'index.php', routes: new Map() });
    assert.equal(await r.resolve('/index.php'), null);
    assert.equal(await r.resolve('/'), null);
  });

  test('a root given through a symlink is compared by its real path', async () => {
    const viaLink = path.join(base, 'root-link');
    await symlink(root, viaLink);
    const r = new Resolver({ root: viaLink, index: '', routes: new Map() });
    assert.deepEqual(await r.resolve('/a.php'), script('/a.php', 'a.php'));
    assert.equal(await r.resolve('/link-out.php'), null);
  });
});

describe('checkHandshake', () => {
  const good = (): Record<string, string | string[] | undefined> => ({
    upgrade: 'websocket',
    connection: 'Upgrade',
    'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', // RFC 6455 section 1.3
    'sec-websocket-version': '13',
  });
  const refused = (method: string, headers: Record<string, string | string[] | undefined>, detail: RegExp): void => {
    const err = checkHandshake(method, headers);
    assert.ok(err, 'expected a refusal');
    assert.equal(err.code, 'WSFPM_ERR_BAD_HANDSHAKE');
    assert.equal(err.status, 400);
    assert.match(err.detail ?? '', detail);
  };

  test('a valid RFC 6455 handshake passes', () => {
    assert.equal(checkHandshake('GET', good()), null);
    assert.equal(checkHandshake('GET', { ...good(), upgrade: 'WebSocket' }), null);
    assert.equal(checkHandshake('GET', { ...good(), 'sec-websocket-key': ' dGhlIHNhbXBsZSBub25jZQ== ' }), null);
  });

  test('only GET', () => {
    for (const m of ['POST', 'HEAD', 'get', 'CONNECT']) refused(m, good(), new RegExp(`method ${m}`));
  });

  test('Upgrade must be websocket', () => {
    refused('GET', { ...good(), upgrade: undefined }, /Upgrade/);
    refused('GET', { ...good(), upgrade: 'h2c' }, /Upgrade/);
    refused('GET', { ...good(), upgrade: ['websocket'] }, /Upgrade/);
  });

  test('Sec-WebSocket-Key must be 16 bytes of base64', () => {
    for (const key of [undefined, '', 'dGhlIHNhbXBsZSBub25jZQ', 'dGhlIHNhbXBsZSBub25jZQ=', 'dGhlIHNhbXBsZSBub25jZ===', 'dGhlIHNhbXBsZSBub25jZQo=', 'dGhlIHNhbXBsZSBub25j!Q==', 'YWJjZGVmZ2hpamtsbW5vcHFy==']) {
      refused('GET', { ...good(), 'sec-websocket-key': key }, /Sec-WebSocket-Key/);
    }
  });

  test('Sec-WebSocket-Version must be 13', () => {
    for (const v of [undefined, '8', '12', '13, 8', ' 13']) refused('GET', { ...good(), 'sec-websocket-version': v }, /Version must be 13/);
  });
});

describe('origins', () => {
  const none = parseOriginList('');
  const allowed = (origin: string | undefined, host: string, policy = none): void => assert.equal(checkOrigin(origin, host, policy), null, `${origin} @ ${host}`);
  const refused = (origin: string, host: string, policy = none): void => {
    const err = checkOrigin(origin, host, policy);
    assert.ok(err, `${origin} @ ${host} should be refused`);
    assert.equal(err.code, 'WSFPM_ERR_ORIGIN');
    assert.equal(err.status, 403);
    assert.equal(err.closeCode, 1008);
  };

  test('parseOriginList', () => {
    assert.deepEqual(parseOriginList(''), { any: false, allow: new Set() });
    assert.deepEqual(parseOriginList(' , ,'), { any: false, allow: new Set() });
    assert.deepEqual(parseOriginList('*'), { any: true, allow: new Set() });
    assert.deepEqual(parseOriginList('https://A.example/, http://b.example:8080//, *'), { any: true, allow: new Set(['https://a.example', 'http://b.example:8080']) });
  });

  test('no Origin header (not a browser) is allowed', () => {
    allowed(undefined, 'example.com');
  });

  test('same host, default ports filled in from the scheme', () => {
    allowed('http://example.com', 'example.com');
    allowed('https://example.com', 'example.com');
    allowed('https://example.com', 'example.com:443');
    allowed('http://example.com:80', 'example.com');
    allowed('http://example.com:8080', 'example.com:8080');
    allowed('HTTP://Example.COM', 'EXAMPLE.com');
    allowed('http://127.0.0.1:8740', '127.0.0.1:8740');
    allowed('http://[::1]:8740', '[::1]:8740');
    allowed(' http://example.com ', 'example.com');
  });

  test('cross-origin requests are refused', () => {
    refused('http://evil.example', 'example.com');
    refused('http://example.com.evil.example', 'example.com');
    refused('http://evilexample.com', 'example.com');
    refused('http://example.com:8080', 'example.com');
    refused('http://example.com', 'example.com:8080');
    refused('https://example.com', 'example.com:80');
    refused('http://example.com', 'example.com:443');
    refused('http://[::1]:8740', '[::2]:8740');
  });

  test('a malformed Origin is refused, saying so', () => {
    for (const origin of ['null', 'not a url', '']) {
      const err = checkOrigin(origin, 'example.com', none);
      assert.ok(err, JSON.stringify(origin));
      assert.equal(err.code, 'WSFPM_ERR_ORIGIN');
    }
    assert.match(checkOrigin('null', 'example.com', none)?.detail ?? '', /malformed Origin "null"/);
  });

  test('the allow-list admits exact origins, case-insensitively', () => {
    const policy = parseOriginList('https://app.example, http://localhost:3000/');
    allowed('https://app.example', 'api.example', policy);
    allowed('https://APP.example', 'api.example', policy);
    allowed('http://localhost:3000', 'api.example', policy);
    refused('http://app.example', 'api.example', policy);
    refused('https://app.example:8443', 'api.example', policy);
    refused('http://localhost:3001', 'api.example', policy);
  });

  test('* admits any origin, even a malformed one', () => {
    const any = parseOriginList('*');
    allowed('http://evil.example', 'example.com', any);
    allowed('null', 'example.com', any);
  });
});
