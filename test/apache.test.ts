/**
 * deploy/apache proven against a real Apache (mpm_event, Debian's modules):
 * the two .htaccess forms and the two vhost snippets, each included or
 * copied unchanged, in front of a PHP site on php-fpm and of wsfpm with the
 * websocket pool of deploy/php-fpm/wsfpm-pool.conf. See describeProxyForm
 * for the five proofs each form gets.
 *
 * The address of wsfpm reaches the unchanged files through Apache's
 * `Define WSFPM_BACKEND`, written into the test's own httpd.conf: the vhost
 * snippets read it at start-up (so each vhost can have its own), the
 * .htaccess files at request time (so one Apache per backend).
 */
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DEFAULTS } from '../src/defaults.ts';
import { runDoctor } from '../src/doctor.ts';
import { startDaemon } from './helpers/harness.ts';
import {
  DEPLOY, SITE, describeProxyForm, docBlockCount, siteWithHtaccess, startApache, startDeployPool, startSitePool, tempDir, unquotedDocLines,
  type ProxyForm,
} from './helpers/webservers.ts';

/** Apache's Timeout and ProxyTimeout here, seconds: the idle limit of a proxied websocket. */
const TIMEOUT_S = 2;
const HTACCESS_PREFIX = path.join(DEPLOY, 'apache', 'htaccess-prefix');
const HTACCESS_SAME_URL = path.join(DEPLOY, 'apache', 'htaccess-same-url');
const VHOST_PREFIX = path.join(DEPLOY, 'apache', 'wsfpm.conf');
const VHOST_SAME_URL = path.join(DEPLOY, 'apache', 'wsfpm-same-url.conf');

const form = (name: string, prefix: boolean, plainGetOfPrefix?: number): ProxyForm => ({
  name, prefix, plainGetOfPrefix, root: '', port: 0, untunedPort: 0,
  idleLimitMs: TIMEOUT_S * 1000, idleMs: TIMEOUT_S * 1000 + 1500, untunedRefusesOrigin: true,
});
const forms = {
  htaccessPrefix: form('.htaccess, prefix form (deploy/apache/htaccess-prefix)', true, 404),
  htaccessSameUrl: form('.htaccess, same-URL form (deploy/apache/htaccess-same-url)', false),
  vhostPrefix: form('vhost, prefix form (deploy/apache/wsfpm.conf)', true, 426),
  vhostSameUrl: form('vhost, same-URL form (deploy/apache/wsfpm-same-url.conf)', false),
};

/** The daemons' --doctor-token: the doctor reads their ping interval and trust list with it. */
const DOCTOR_TOKEN = 'doctor-token-0123456789';
const cleanups: Array<() => Promise<unknown>> = [];

before(async () => {
  const tmp = await tempDir('wsfpm-apache-test-');
  cleanups.push(() => rm(tmp, { recursive: true, force: true }));
  const site = await startSitePool();
  cleanups.push(() => site.stop());
  const wsPool = await startDeployPool(path.join(tmp, 'fpm'), { maxChildren: 16, sessionDir: site.sessionDir });
  cleanups.push(() => wsPool.stop());

  /** The deploy setup (pings every second, trusts the local proxy) and the control (neither). */
  const daemons = async (root: string): Promise<{ tuned: string; untuned: string }> => {
    // startDaemon's pool argument only names a default socket; `fpm` points it at the websocket pool.
    const fpm = { root, fpm: `unix:${wsPool.socket}`, logLevel: 'warn', doctorToken: DOCTOR_TOKEN };
    const tuned = await startDaemon(site, { ...fpm, fpmStatus: `unix:${wsPool.statusSocket}`, pingInterval: '1000' });
    cleanups.push(() => tuned.close());
    const untuned = await startDaemon(site, { ...fpm, pingInterval: '0', trustProxy: '' });
    cleanups.push(() => untuned.close());
    return { tuned: `127.0.0.1:${tuned.port}`, untuned: `127.0.0.1:${untuned.port}` };
  };

  // One .htaccess per directory: each .htaccess form gets its own copy of the site.
  forms.htaccessPrefix.root = await siteWithHtaccess(tmp, 'prefix', HTACCESS_PREFIX);
  forms.htaccessSameUrl.root = await siteWithHtaccess(tmp, 'same-url', HTACCESS_SAME_URL);
  forms.vhostPrefix.root = SITE;
  forms.vhostSameUrl.root = SITE;
  const [prefixWs, sameUrlWs, siteWs] = await Promise.all([forms.htaccessPrefix.root, forms.htaccessSameUrl.root, SITE].map(daemons));

  const htaccess = (root: string, backend: string) => ({ vhosts: [{ docroot: root, fpmSocket: site.socket, backend, allowOverride: 'FileInfo' }], timeout: TIMEOUT_S });
  const vhost = (include: string, backend: string) => ({ docroot: SITE, fpmSocket: site.socket, backend, include });
  const servers = await Promise.all([
    startApache(htaccess(forms.htaccessPrefix.root, prefixWs!.tuned)),
    startApache(htaccess(forms.htaccessPrefix.root, prefixWs!.untuned)),
    startApache(htaccess(forms.htaccessSameUrl.root, sameUrlWs!.tuned)),
    startApache(htaccess(forms.htaccessSameUrl.root, sameUrlWs!.untuned)),
    // The vhost snippets expand ${WSFPM_BACKEND} while the config is read: one Apache, four vhosts.
    startApache({
      vhosts: [
        vhost(VHOST_PREFIX, siteWs!.tuned),
        vhost(VHOST_PREFIX, siteWs!.untuned),
        vhost(VHOST_SAME_URL, siteWs!.tuned),
        vhost(VHOST_SAME_URL, siteWs!.untuned),
      ],
      timeout: TIMEOUT_S,
    }),
  ].map((p) => p.then((s) => {
    cleanups.push(() => s.stop());
    return s;
  })));
  forms.htaccessPrefix.port = servers[0]!.ports[0]!;
  forms.htaccessPrefix.untunedPort = servers[1]!.ports[0]!;
  forms.htaccessSameUrl.port = servers[2]!.ports[0]!;
  forms.htaccessSameUrl.untunedPort = servers[3]!.ports[0]!;
  const vhostPorts = servers[4]!.ports;
  forms.vhostPrefix.port = vhostPorts[0]!;
  forms.vhostPrefix.untunedPort = vhostPorts[1]!;
  forms.vhostSameUrl.port = vhostPorts[2]!;
  forms.vhostSameUrl.untunedPort = vhostPorts[3]!;
});

after(async () => {
  // Servers first, then daemons, pools and dirs; every step even if one fails.
  for (const f of cleanups.reverse()) await f().catch((err: unknown) => console.error('cleanup:', err));
});

describe('the deploy files as shipped', () => {
  it('the .htaccess copies are the deploy files byte for byte', async () => {
    assert.equal(await readFile(path.join(forms.htaccessPrefix.root, '.htaccess'), 'utf8'), await readFile(HTACCESS_PREFIX, 'utf8'));
    assert.equal(await readFile(path.join(forms.htaccessSameUrl.root, '.htaccess'), 'utf8'), await readFile(HTACCESS_SAME_URL, 'utf8'));
  });

  it('each .htaccess has the same rule for shared hosting as the one the tests run, with wsfpm\'s default address', async () => {
    const address = `${DEFAULTS.host}:${DEFAULTS.port}`;
    for (const file of [HTACCESS_PREFIX, HTACCESS_SAME_URL]) {
      const text = await readFile(file, 'utf8');
      const block = (open: string): string => {
        const m = new RegExp(`^${open}\\n([\\s\\S]*?)^</IfDefine>`, 'm').exec(text);
        assert.ok(m, `${file}: no ${open} block`);
        return m[1]!;
      };
      const tested = block('<IfDefine WSFPM_BACKEND>');
      const shared = block('<IfDefine !WSFPM_BACKEND>');
      assert.match(tested, /\$\{WSFPM_BACKEND\}/);
      assert.equal(shared, tested.replaceAll('${WSFPM_BACKEND}', address), `${file}: the two blocks differ in more than the address`);
    }
  });

  it('each vhost snippet defaults to wsfpm\'s default address', async () => {
    for (const file of [VHOST_PREFIX, VHOST_SAME_URL]) {
      assert.match(await readFile(file, 'utf8'), new RegExp(`<IfDefine !WSFPM_BACKEND>\\n\\s*Define WSFPM_BACKEND ${DEFAULTS.host}:${DEFAULTS.port}\\n</IfDefine>`));
    }
  });
});

describe('docs/deploy.md', () => {
  it('quotes the Apache files, the php-fpm pool and the systemd unit as they are', async () => {
    assert.ok((await docBlockCount('apache')) >= 3, 'docs/deploy.md quotes at least 3 apache blocks');
    assert.deepEqual(await unquotedDocLines('apache', [HTACCESS_PREFIX, HTACCESS_SAME_URL, VHOST_PREFIX, VHOST_SAME_URL]), []);
    assert.ok((await docBlockCount('ini')) >= 5, 'docs/deploy.md quotes at least 5 ini blocks');
    const pool = path.join(DEPLOY, 'php-fpm', 'wsfpm-pool.conf');
    const unit = path.join(DEPLOY, 'systemd', 'wsfpm.service');
    assert.deepEqual(await unquotedDocLines('ini', [pool, unit]), []);
  });
});

for (const f of Object.values(forms)) describeProxyForm(f);

describe('wsfpm doctor through Apache', () => {
  it('passes the deploy setup, and measures that pings outlast Apache\'s idle timeout', async () => {
    const findings = await runDoctor(`http://127.0.0.1:${forms.htaccessPrefix.port}/ws/echo.php`, { idleCheck: TIMEOUT_S + 2, token: DOCTOR_TOKEN });
    assert.deepEqual(findings.filter((f) => f.verdict === 'fail'), []);
    assert.ok(findings.some((f) => f.verdict === 'ok' && /cuts idle websockets after 2\.\d s; wsfpm pings every 1 s/.test(f.text)), JSON.stringify(findings));
  });

  it('names what is wrong with the untuned daemon: untrusted proxy, origin, no pings', async () => {
    const fails = (await runDoctor(`http://127.0.0.1:${forms.vhostPrefix.untunedPort}/ws/echo.php`, { idleCheck: TIMEOUT_S + 2, token: DOCTOR_TOKEN }))
      .filter((f) => f.verdict === 'fail').map((f) => f.text).join('\n');
    assert.match(fails, /not trusted.*--trust-proxy/);
    assert.match(fails, /origin check refuses/);
    assert.match(fails, /cuts idle websockets after 2\.\d s, but wsfpm pings every 0 s/);
  });

  it('explains a broken .htaccess whose target is http:// instead of ws://', async () => {
    const tmp = await tempDir('wsfpm-apache-broken-');
    try {
      const broken = path.join(tmp, 'htaccess-http');
      await writeFile(broken, (await readFile(HTACCESS_PREFIX, 'utf8')).replaceAll('ws://', 'http://'));
      const root = await siteWithHtaccess(tmp, 'broken', broken);
      const wsfpm = await startDaemon(await brokenPool(), { root, logLevel: 'warn' });
      const apache = await startApache({ vhosts: [{ docroot: root, fpmSocket: brokenSite!.socket, backend: `127.0.0.1:${wsfpm.port}`, allowOverride: 'FileInfo' }], timeout: TIMEOUT_S });
      try {
        const fails = (await runDoctor(`http://127.0.0.1:${apache.ports[0]}/ws/echo.php`, { idleCheck: 0 })).filter((f) => f.verdict === 'fail');
        assert.equal(fails.length, 1, JSON.stringify(fails));
        assert.match(fails[0]!.text, /without its Upgrade header.*must be ws:\/\//);
      } finally {
        await apache.stop();
        await wsfpm.close();
      }
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  });
});

let brokenSite: Awaited<ReturnType<typeof startSitePool>> | undefined;
async function brokenPool(): Promise<Awaited<ReturnType<typeof startSitePool>>> {
  brokenSite ??= await startSitePool();
  cleanups.push(() => brokenSite!.stop());
  return brokenSite;
}
