/**
 * laravel-echo's websocket through a real Apache and nginx, with the
 * Pusher rules of deploy/ included unchanged (deploy/apache/pusher.conf as
 * a .htaccess and in the vhost, deploy/nginx/wsfpm-pusher.conf in
 * server{}) and through the same-URL forms: pusher-js connects to the web
 * server's port, an event published to wsfpm (as Laravel's broadcaster does,
 * on loopback) reaches it, and a plain GET of /app/… stays the site's.
 */
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDaemon } from './helpers/harness.ts';
import { APP_ID, KEY, SECRET, connectPusher, subscribed, next, triggerEvent, type Pusher } from './helpers/pusher.ts';
import { DEPLOY, SITE, getPage, siteWithHtaccess, startApache, startNginx, startSitePool, tempDir } from './helpers/webservers.ts';

const cleanups: Array<() => Promise<unknown>> = [];
const clients: Pusher[] = [];
let wsfpmPort = 0;
const ports: Record<string, number> = {};

before(async () => {
  const tmp = await tempDir('wsfpm-pusher-deploy-');
  cleanups.push(() => rm(tmp, { recursive: true, force: true }));
  const site = await startSitePool();
  cleanups.push(() => site.stop());
  const daemon = await startDaemon(site, { root: SITE, logLevel: 'warn', pusherApps: `${APP_ID}:${KEY}:${SECRET}` });
  cleanups.push(() => daemon.close());
  wsfpmPort = daemon.port;
  const backend = `127.0.0.1:${daemon.port}`;
  const htaccessRoot = await siteWithHtaccess(tmp, 'htaccess-site', path.join(DEPLOY, 'apache', 'pusher.conf'));
  const apache = await startApache({
    timeout: 30,
    vhosts: [
      { docroot: htaccessRoot, fpmSocket: site.socket, backend, allowOverride: 'FileInfo' },
      { docroot: SITE, fpmSocket: site.socket, backend, include: path.join(DEPLOY, 'apache', 'pusher.conf') },
      { docroot: SITE, fpmSocket: site.socket, backend, include: path.join(DEPLOY, 'apache', 'wsfpm-same-url.conf') },
    ],
  });
  cleanups.push(() => apache.stop());
  // nginx: deploy/nginx/wsfpm-upstream.conf with only its address replaced.
  const upstream = path.join(tmp, 'upstream.conf');
  await writeFile(upstream, (await readFile(path.join(DEPLOY, 'nginx', 'wsfpm-upstream.conf'), 'utf8')).replace('127.0.0.1:8740', backend));
  const nginx = await startNginx({
    upstreamFile: upstream,
    readTimeout: '30s',
    servers: [
      { root: SITE, fpmSocket: site.socket, include: [path.join(DEPLOY, 'nginx', 'wsfpm-pusher.conf')] },
      { root: SITE, fpmSocket: site.socket, include: [path.join(DEPLOY, 'nginx', 'wsfpm-same-url.conf')] },
    ],
  });
  cleanups.push(() => nginx.stop());
  Object.assign(ports, {
    'Apache, deploy/apache/pusher.conf as .htaccess': apache.ports[0],
    'Apache, deploy/apache/pusher.conf in the vhost': apache.ports[1],
    'Apache, deploy/apache/wsfpm-same-url.conf': apache.ports[2],
    'nginx, deploy/nginx/wsfpm-pusher.conf': nginx.ports[0],
    'nginx, deploy/nginx/wsfpm-same-url.conf': nginx.ports[1],
  });
});

after(async () => {
  for (const c of clients) c.disconnect();
  for (const f of cleanups.reverse()) await f().catch((err: unknown) => console.error('cleanup:', err));
});

describe('the Pusher websocket behind the web server', () => {
  for (const name of ['Apache, deploy/apache/pusher.conf as .htaccess', 'Apache, deploy/apache/pusher.conf in the vhost', 'Apache, deploy/apache/wsfpm-same-url.conf', 'nginx, deploy/nginx/wsfpm-pusher.conf', 'nginx, deploy/nginx/wsfpm-same-url.conf']) {
    it(name, async () => {
      const port = ports[name]!;
      const p = await connectPusher(port, 'alice', KEY, clients);
      const channel = await subscribed(p, `news-${port}`);
      const got = next(channel, 'App\\Events\\Hello');
      assert.equal((await triggerEvent(wsfpmPort, [`news-${port}`], 'App\\Events\\Hello', { via: name })).status, 200);
      assert.deepEqual(await got, { via: name });
      p.disconnect();
      // A page request under /app/ is the site's: its 404, not wsfpm's 426.
      const page = await getPage(port, '/app/dashboard');
      assert.equal(page.status, 404, name);
      assert.ok(!('x-wsfpm-error' in page.headers), name);
    });
  }
});
