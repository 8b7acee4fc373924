/**
 * The browser module (client/wsfpm.js) in Debian's chromium through
 * playwright-core, across a daemon restart: the page's daemon stops, messages
 * are published on another node (sharing a real redis-server) while it is
 * down, a new daemon starts on the same port, the page reconnects by itself
 * and resumes: every message once, in order, none lost. Then a flushed
 * Redis under the live subscription is reported as lost.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { buildConfig } from '../src/config.ts';
import { createDaemon, type Daemon } from '../src/server/app.ts';
import { browserMissing, launchBrowser, WAIT } from './helpers/browser.ts';
import { FIXTURES, logSink, sleep, startDaemon, startPool, type Harness } from './helpers/harness.ts';
import { freePort, RedisServer } from './helpers/redis.ts';
import { publishVia } from './helpers/history.ts';
import type { FpmPool } from '../src/fpm/pool.ts';

const missing = browserMissing();
let redis: RedisServer;
let pool: FpmPool;
let other: Omit<Harness, 'pool'>;
let browser: Browser;
let port: number;
let current: Daemon | null = null;

async function startPageDaemon(): Promise<Daemon> {
  const config = buildConfig({ root: FIXTURES, port: String(port), fpm: `unix:${pool.socket}`, pages: 'true', redis: redis.url, control: 'tcp:127.0.0.1:0', logLevel: 'debug' }, {});
  const daemon = await createDaemon(config, logSink([]));
  await daemon.app.listen({ host: '127.0.0.1', port });
  return daemon;
}

const publish = (daemon: Daemon, data: string): Promise<void> => publishVia(daemon, 'browser', data);

const state = (page: Page): Promise<{ got: string[]; events: string[] }> => page.evaluate(() => ({ got: (window as unknown as { got: string[] }).got, events: (window as unknown as { events: string[] }).events }));

before(async () => {
  if (missing) return;
  redis = await RedisServer.start();
  pool = await startPool(6);
  other = await startDaemon(pool, { redis: redis.url });
  port = await freePort();
  current = await startPageDaemon();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await current?.app.close();
  await other?.close();
  await pool?.stop();
  await redis?.stop();
});

it('resumes across a daemon restart with publishes during the gap: none lost, none duplicated, order kept', { skip: missing ?? false, timeout: 120_000 }, async () => {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${port}/hist-page.html`);
  await page.waitForFunction(() => (window as unknown as { events: string[] }).events.includes('script ready'), null, { timeout: WAIT });
  for (let i = 0; i < 100 && !other.daemon.hub.history?.keeps('browser'); i++) await sleep(20);
  assert.equal(other.daemon.hub.history?.keeps('browser'), true, 'the other node learned that the channel keeps history');

  const sent = Array.from({ length: 15 }, (_, i) => `m${i + 1}`);
  for (const m of sent.slice(0, 5)) await publish(current!, m);
  await page.waitForFunction(() => (window as unknown as { got: string[] }).got.length >= 5, null, { timeout: WAIT });

  await current!.app.close();
  current = null;
  await page.waitForFunction(() => (window as unknown as { events: string[] }).events.some((e) => e.startsWith('close')), null, { timeout: WAIT });
  for (const m of sent.slice(5, 10)) await publish(other.daemon, m);

  current = await startPageDaemon();
  await page.waitForFunction(() => (window as unknown as { events: string[] }).events.some((e) => e.startsWith('recovered') || e === 'lost'), null, { timeout: 30_000 });
  for (const m of sent.slice(10)) await publish(current, m);
  await page.waitForFunction(() => (window as unknown as { got: string[] }).got.length >= 15, null, { timeout: WAIT });
  await sleep(200); // a duplicate would arrive right behind
  const { got, events } = await state(page);
  assert.deepEqual(got, sent);
  assert.ok(events.includes('recovered 5'), events.join(', '));
  assert.ok(!events.includes('lost'), events.join(', '));

  // Redis loses the history under a live subscription: the next message comes under a new epoch, and the page hears it may have missed some.
  execFileSync('redis-cli', ['-p', String(redis.port), 'FLUSHALL']);
  await publish(current, 'after the flush');
  await page.waitForFunction(() => (window as unknown as { events: string[] }).events.includes('lost'), null, { timeout: WAIT });
  assert.equal((await state(page)).got.at(-1), 'after the flush');
  await page.close();
});
