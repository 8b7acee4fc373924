/**
 * `--fpm managed`: wsfpm's own php-fpm master, sized to the connection limit,
 * refusing upgrades with 503 at once when full, restarting after a crash
 * (clients closed with 1012), copying the site's pool settings, stopped
 * with the daemon.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, it } from 'node:test';
import { buildConfig } from '../src/config.ts';
import { FcgiRequest } from '../src/fastcgi/request.ts';
import { createDaemon, type Daemon } from '../src/server/app.ts';
import { FIXTURES, open, refusal, sleep } from './helpers/harness.ts';

let daemon: Daemon;
let port: number;
let tmp: string;
const logs: Array<Record<string, unknown>> = [];
const url = (p: string) => `ws://127.0.0.1:${port}${p}`;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'wsfpm-managed-'));
  const site = path.join(tmp, 'www.conf');
  await writeFile(site, ['[www]', 'user = www-data', 'pm = ondemand', 'php_value[memory_limit] = 77M', 'env[SITE_VAR] = from-the-site', 'php_admin_value[output_buffering] = 4096', ''].join('\n'));
  const config = buildConfig({ root: FIXTURES, fpm: 'managed', maxConnections: '2', eventConcurrency: '1', fpmInherit: site, handshakeTimeout: '5000', control: 'tcp:127.0.0.1:0', logLevel: 'debug' }, {});
  daemon = await createDaemon(config, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  await daemon.app.listen({ host: '127.0.0.1', port: 0 });
  port = (daemon.app.server.address() as { port: number }).port;
});

after(async () => {
  await daemon?.app.close();
  await rm(tmp, { recursive: true, force: true });
});

it('runs with the site\'s PHP settings, and wsfpm\'s streaming overrides win', async () => {
  const c = await open(url('/ini.php'));
  const ini = JSON.parse(await c.text()) as Record<string, unknown>;
  assert.equal(ini.memory_limit, '77M');
  assert.equal(ini.SITE_VAR, 'from-the-site');
  assert.equal(ini.output_buffering, '0');
  assert.equal(ini.max_execution_time, '0');
  c.ws.close();
  await c.closed;
});

it('refuses with 503 at once, from the status socket, when no worker is idle', async () => {
  // maxConnections 2 and eventConcurrency 1 → 5 workers. Four are taken by the site's slow pages, one by a websocket.
  const pages = Array.from({ length: 4 }, () => new FcgiRequest(daemon.managed!.address, Object.entries({
    REQUEST_METHOD: 'GET', SCRIPT_FILENAME: path.join(FIXTURES, 'hang.php'), SCRIPT_NAME: '/hang.php', CONTENT_LENGTH: '0',
  }), { onHead() {}, onStdout() {}, onStderr() {}, onEnd() {} }, { maxHeaderBlock: 1024 }));
  for (const p of pages) p.endStdin();
  await sleep(300);
  const a = await open(url('/echo.php'));
  const r = await refusal(url('/echo.php'));
  assert.equal(r.status, 503);
  assert.equal(r.headers['retry-after'], '5');
  assert.ok(logs.some((l) => l.code === 'WSFPM_ERR_POOL_FULL'), 'refused by the status check, not by the handshake timeout');
  for (const p of pages) p.destroy();
  a.ws.close();
  await a.closed;
});

it('closes connections with 1012 when the master dies, restarts it, and serves again', async () => {
  const c = await open(url('/echo.php'));
  const pid = daemon.managed!.pool.pid!;
  process.kill(pid, 'SIGKILL');
  assert.equal((await c.closed).code, 1012);
  assert.ok(logs.some((l) => l.code === 'WSFPM_ERR_FPM_CRASHED'));
  let served = false;
  for (let i = 0; i < 50 && !served; i++) {
    await sleep(200);
    try {
      const again = await open(url('/echo.php'));
      again.ws.send('back');
      assert.equal(await again.text(), 'back');
      again.ws.close();
      await again.closed;
      served = true;
    } catch {
      // Not restarted yet.
    }
  }
  assert.ok(served, 'served again after the restart');
  assert.notEqual(daemon.managed!.pool.pid, pid);
});

it('stops the master with the daemon', async () => {
  const pid = daemon.managed!.pool.pid!;
  await daemon.app.close();
  await sleep(100);
  assert.throws(() => process.kill(pid, 0), /ESRCH/);
});
