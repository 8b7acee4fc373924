/**
 * deploy/nginx proven against a real nginx: the prefix and the same-URL
 * server{} snippets and the http{} map, included unchanged, in front of a
 * PHP site on php-fpm and of wsfpm with the websocket pool of
 * deploy/php-fpm/wsfpm-pool.conf. See describeProxyForm for the five proofs
 * each form gets.
 *
 * wsfpm's address lives in deploy/nginx/wsfpm-upstream.conf, the one file a
 * user edits; the test writes its own copy of it in which ONLY the address
 * 127.0.0.1:8740 is replaced by its wsfpm's, and checks that the shipped
 * file passes `nginx -t`. One upstream per nginx: the control daemon
 * (no pings, no trusted proxy) gets an nginx of its own.
 */
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DEFAULTS } from '../src/defaults.ts';
import { runDoctor } from '../src/doctor.ts';
import { open, startDaemon } from './helpers/harness.ts';
import {
  DEPLOY, SITE, describeProxyForm, docBlockCount, nginxSyntax, startDeployPool, startNginx, startSitePool, tempDir, unquotedDocLines,
  type ProxyForm,
} from './helpers/webservers.ts';

/** nginx's proxy_read_timeout here: the idle limit of a proxied websocket. */
const READ_TIMEOUT_S = 2;
const UPSTREAM = path.join(DEPLOY, 'nginx', 'wsfpm-upstream.conf');
const MAP = path.join(DEPLOY, 'nginx', 'wsfpm.conf');
const PREFIX = path.join(DEPLOY, 'nginx', 'wsfpm-prefix.conf');
const SAME_URL = path.join(DEPLOY, 'nginx', 'wsfpm-same-url.conf');
const DEFAULT_ADDRESS = `${DEFAULTS.host}:${DEFAULTS.port}`;

const form = (name: string, prefix: boolean): ProxyForm => ({
  name, prefix, root: SITE, port: 0, untunedPort: 0,
  idleLimitMs: READ_TIMEOUT_S * 1000, idleMs: READ_TIMEOUT_S * 1000 + 1500,
  // wsfpm answers a plain GET of /ws/… with 426.
  plainGetOfPrefix: 426,
  // The snippets send Host: $http_host, so even without a trusted proxy the site's Origin matches.
  untunedRefusesOrigin: false,
});
const forms = {
  prefix: form('prefix form (deploy/nginx/wsfpm-prefix.conf)', true),
  sameUrl: form('same-URL form (deploy/nginx/wsfpm-same-url.conf)', false),
};

/** The daemons' --doctor-token: the doctor reads their ping interval and trust list with it. */
const DOCTOR_TOKEN = 'doctor-token-0123456789';
const cleanups: Array<() => Promise<unknown>> = [];
let spool = '';

/** deploy/nginx/wsfpm-upstream.conf with only its documented address replaced. */
async function upstreamFor(dir: string, name: string, address: string): Promise<string> {
  const shipped = await readFile(UPSTREAM, 'utf8');
  assert.equal(shipped.split(DEFAULT_ADDRESS).length, 2, `${UPSTREAM} names ${DEFAULT_ADDRESS} exactly once`);
  const file = path.join(dir, name);
  await writeFile(file, shipped.replace(DEFAULT_ADDRESS, address));
  return file;
}

before(async () => {
  const tmp = await tempDir('wsfpm-nginx-test-');
  cleanups.push(() => rm(tmp, { recursive: true, force: true }));
  const site = await startSitePool();
  cleanups.push(() => site.stop());
  const wsPool = await startDeployPool(path.join(tmp, 'fpm'), { maxChildren: 12, sessionDir: site.sessionDir });
  cleanups.push(() => wsPool.stop());
  spool = wsPool.spool;

  // startDaemon's pool argument only names a default socket; `fpm` points it at the websocket pool.
  const common = { root: SITE, fpm: `unix:${wsPool.socket}`, logLevel: 'warn', doctorToken: DOCTOR_TOKEN };
  const tuned = await startDaemon(site, { ...common, fpmStatus: `unix:${wsPool.statusSocket}`, pingInterval: '1000' });
  cleanups.push(() => tuned.close());
  const untuned = await startDaemon(site, { ...common, pingInterval: '0', trustProxy: '' });
  cleanups.push(() => untuned.close());

  const servers = [{ root: SITE, fpmSocket: site.socket, include: [PREFIX] }, { root: SITE, fpmSocket: site.socket, include: [SAME_URL] }];
  const [main, control] = await Promise.all([
    startNginx({ upstreamFile: await upstreamFor(tmp, 'tuned-upstream.conf', `127.0.0.1:${tuned.port}`), servers, readTimeout: `${READ_TIMEOUT_S}s` }),
    startNginx({ upstreamFile: await upstreamFor(tmp, 'untuned-upstream.conf', `127.0.0.1:${untuned.port}`), servers, readTimeout: `${READ_TIMEOUT_S}s` }),
  ].map((p) => p.then((s) => {
    cleanups.push(() => s.stop());
    return s;
  })));
  forms.prefix.port = main!.ports[0]!;
  forms.sameUrl.port = main!.ports[1]!;
  forms.prefix.untunedPort = control!.ports[0]!;
  forms.sameUrl.untunedPort = control!.ports[1]!;
});

after(async () => {
  for (const f of cleanups.reverse()) await f().catch((err: unknown) => console.error('cleanup:', err));
});

describe('the deploy files as shipped', () => {
  it('wsfpm-upstream.conf and wsfpm.conf pass nginx -t as they are', async () => {
    const r = await nginxSyntax([UPSTREAM, MAP]);
    assert.ok(r.ok, r.output);
  });
});

describe('the websocket pool (deploy/php-fpm/wsfpm-pool.conf)', () => {
  it('runs the websocket scripts as the site\'s user, with no time limit, no buffering, errors logged, its own spool', async () => {
    const c = await open(`ws://127.0.0.1:${forms.prefix.port}/ws/pool.php`);
    const pool = JSON.parse(await c.text()) as Record<string, string>;
    assert.deepEqual(pool, {
      user: process.getuid?.() === 0 ? 'www-data' : os.userInfo().username,
      max_execution_time: '0',
      output_buffering: '0',
      'zlib.output_compression': '0',
      display_errors: '0',
      log_errors: '1',
      upload_tmp_dir: spool,
    });
    c.ws.close(1000);
    await c.closed;
  });
});

describe('docs/deploy.md', () => {
  it('quotes the nginx files as they are', async () => {
    assert.ok((await docBlockCount('nginx')) >= 3, 'docs/deploy.md quotes at least 3 nginx blocks');
    assert.deepEqual(await unquotedDocLines('nginx', [UPSTREAM, MAP, PREFIX, SAME_URL]), []);
  });
});

for (const f of Object.values(forms)) describeProxyForm(f);

describe('wsfpm doctor through Nginx', () => {
  it('passes both deploy forms, and measures that pings outlast proxy_read_timeout', async () => {
    for (const [f, url] of [[forms.prefix, '/ws/echo.php'], [forms.sameUrl, '/echo.php']] as const) {
      const findings = await runDoctor(`http://127.0.0.1:${f.port}${url}`, { idleCheck: READ_TIMEOUT_S + 2, token: DOCTOR_TOKEN });
      assert.deepEqual(findings.filter((x) => x.verdict === 'fail'), [], f.name);
      assert.ok(findings.some((x) => x.verdict === 'ok' && /cuts idle websockets after 2\.\d s; wsfpm pings every 1 s/.test(x.text)), JSON.stringify(findings));
    }
  });

  it('names the untuned daemon\'s problems through the same Nginx', async () => {
    const fails = (await runDoctor(`http://127.0.0.1:${forms.prefix.untunedPort}/ws/echo.php`, { idleCheck: READ_TIMEOUT_S + 2, token: DOCTOR_TOKEN }))
      .filter((x) => x.verdict === 'fail').map((x) => x.text).join('\n');
    assert.match(fails, /not trusted.*--trust-proxy/);
    assert.match(fails, /pings every 0 s/);
  });
});
