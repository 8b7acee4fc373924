/**
 * Regression (issue 13): with the checkout below a directory the web
 * servers' workers cannot enter (a 0700 home directory, tests as root,
 * workers as www-data), Apache answered 500, wsfpm's websockets got 502, and
 * test/apache.test.ts and test/front.test.ts failed.
 *
 * Here the code and the test files are copied below a new 0700 dir and the
 * helpers are loaded from that copy, so every path they derive from their
 * own location is below it: a real Apache and nginx with the deploy files,
 * the site's php-fpm pool and wsfpm on the websocket pool must still serve a
 * page and echo a websocket. A control vhost given the checkout's own site
 * shows that the 0700 dir does keep the workers out.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { DEFAULTS } from '../src/defaults.ts';
import { open } from './helpers/harness.ts';

type Web = typeof import('./helpers/webservers.ts');
type Harness = typeof import('./helpers/harness.ts');

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** What the helpers load at run time; node_modules is linked, not copied. */
const TREES = ['src', 'test/helpers', 'test/fixtures/site', 'test/fixtures/front', 'php', 'deploy', 'package.json', 'tsconfig.json'];
const isRoot = process.getuid?.() === 0;

const cleanups: Array<() => Promise<unknown>> = [];
let parent = '';
let checkout = '';
let web: Web;
const ports = { apache: 0, nginx: 0, control: 0 };

before(async () => {
  parent = await mkdtemp(path.join(os.tmpdir(), 'wsfpm-private-'));
  cleanups.push(() => rm(parent, { recursive: true, force: true }));
  checkout = path.join(parent, 'checkout');
  for (const t of TREES) await cp(path.join(REPO, t), path.join(checkout, t), { recursive: true });
  await symlink(path.join(REPO, 'node_modules'), path.join(checkout, 'node_modules'));
  const load = <T>(file: string): Promise<T> => import(pathToFileURL(path.join(checkout, file)).href) as Promise<T>;
  web = await load<Web>('test/helpers/webservers.ts');
  const { startDaemon } = await load<Harness>('test/helpers/harness.ts');

  const site = await web.startSitePool(2);
  cleanups.push(() => site.stop());
  const tmp = await web.tempDir('wsfpm-private-run-');
  cleanups.push(() => rm(tmp, { recursive: true, force: true }));
  const wsPool = await web.startDeployPool(path.join(tmp, 'fpm'), { maxChildren: 4, sessionDir: site.sessionDir });
  cleanups.push(() => wsPool.stop());
  const wsfpm = await startDaemon(site, { root: web.SITE, fpm: `unix:${wsPool.socket}`, logLevel: 'warn' });
  cleanups.push(() => wsfpm.close());
  const backend = `127.0.0.1:${wsfpm.port}`;

  const upstream = path.join(tmp, 'upstream.conf');
  await writeFile(upstream, (await readFile(path.join(web.DEPLOY, 'nginx', 'wsfpm-upstream.conf'), 'utf8')).replace(`${DEFAULTS.host}:${DEFAULTS.port}`, backend));
  const [apache, nginx] = await Promise.all([
    web.startApache({
      vhosts: [
        { docroot: web.SITE, fpmSocket: site.socket, backend, include: path.join(web.DEPLOY, 'apache', 'wsfpm.conf') },
        // The control: the checkout's own files, below the 0700 dir.
        { docroot: path.join(checkout, 'test', 'fixtures', 'site'), fpmSocket: site.socket },
      ],
      timeout: 30,
    }),
    web.startNginx({ upstreamFile: upstream, servers: [{ root: web.SITE, fpmSocket: site.socket, include: [path.join(web.DEPLOY, 'nginx', 'wsfpm-prefix.conf')] }], readTimeout: '30s' }),
  ]);
  cleanups.push(() => apache.stop(), () => nginx.stop());
  [ports.apache, ports.control] = apache.ports as [number, number];
  ports.nginx = nginx.ports[0]!;
});

after(async () => {
  for (const f of cleanups.reverse()) await f().catch((err: unknown) => console.error('cleanup:', err));
});

describe('a checkout below a 0700 directory', () => {
  it('is really below one: the helpers were loaded from there', async () => {
    assert.equal((await stat(parent)).mode & 0o777, 0o700);
    assert.equal(web.REPO, checkout);
    assert.ok(!web.SITE.startsWith(parent + path.sep), `the servers get a copy outside the 0700 dir, not ${web.SITE}`);
  });

  for (const server of ['apache', 'nginx'] as const) {
    it(`${server} serves a page through php-fpm and a websocket echo through wsfpm`, async () => {
      const page = await web.getPage(ports[server], '/chat.php?name=alice');
      assert.equal(page.status, 200, page.body);
      const seen = JSON.parse(page.body) as Record<string, unknown>;
      assert.equal(seen.name, 'alice');
      assert.equal(seen.SCRIPT_FILENAME, path.join(web.SITE, 'chat.php'));
      const c = await open(`ws://127.0.0.1:${ports[server]}/ws/echo.php`, { localAddress: web.CLIENT_IP });
      c.ws.send('hello from a private checkout');
      assert.equal(await c.text(), 'hello from a private checkout');
      c.ws.close(1000);
      assert.equal((await c.closed).code, 1000);
    });
  }

  it('the control: the checkout\'s own site is out of the workers\' reach', { skip: isRoot ? false : 'not root: the workers run as this user, who can enter the dir' }, async () => {
    const page = await web.getPage(ports.control, '/chat.php?name=alice');
    assert.notEqual(page.status, 200, page.body);
  });
});
