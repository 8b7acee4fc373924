/**
 * laravel-echo over pusher-js in Debian's Chromium, against wsfpm serving
 * the page, the PHP auth endpoint (with the browser's session cookie, as
 * Laravel's /broadcasting/auth) and the Pusher websocket on one port. Two
 * browser contexts are two people: presence here/joining/leaving, a
 * private channel event from the HTTP API, a whisper between them.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { startHarness, type Harness } from './helpers/harness.ts';
import { APP_ID, KEY, SECRET, triggerEvent } from './helpers/pusher.ts';
import { browserMissing, launchBrowser, recordConsole, REPO, screenshot } from './helpers/browser.ts';

const missing = browserMissing();
const WAIT = 10_000;
const VENDOR: Record<string, string> = {
  'pusher.min.js': path.join(REPO, 'node_modules', 'pusher-js', 'dist', 'web', 'pusher.min.js'),
  'echo.iife.js': path.join(REPO, 'node_modules', 'laravel-echo', 'dist', 'echo.iife.js'),
};

describe('laravel-echo in Chromium', { skip: missing ?? false, timeout: 120_000 }, () => {
  let h: Harness;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const consoleLines: string[] = [];

  before(async () => {
    h = await startHarness({ pusherApps: `${APP_ID}:${KEY}:${SECRET}:client-events`, pages: 'true' }, 8);
    browser = await launchBrowser();
  });
  after(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
    await h?.close();
  });

  const site = (p: string) => `http://127.0.0.1:${h.port}${p}`;

  /** A person in a context of their own (own session cookie), on the Echo page. */
  async function person(user: string): Promise<{ page: Page; context: BrowserContext }> {
    const context = await browser.newContext();
    contexts.push(context);
    await context.route('**/pusher/vendor/*', (route) => {
      const file = VENDOR[path.basename(new URL(route.request().url()).pathname)];
      return file ? route.fulfill({ path: file, contentType: 'text/javascript' }) : route.abort();
    });
    const page = await context.newPage();
    recordConsole(page, consoleLines, user);
    // The frames both ways, for the failure message.
    page.on('websocket', (ws) => {
      ws.on('framereceived', (f) => consoleLines.push(`${user} <- ${String(f.payload).slice(0, 200)}`));
      ws.on('framesent', (f) => consoleLines.push(`${user} -> ${String(f.payload).slice(0, 200)}`));
    });
    await page.goto(site(`/pusher/login.php?user=${user}`));
    await page.goto(site('/pusher/echo.html'));
    return { page, context };
  }

  const events = (page: Page) => page.evaluate(() => (window as unknown as { events: string[] }).events);

  async function until(page: Page, line: string): Promise<string[]> {
    const deadline = Date.now() + WAIT;
    for (;;) {
      const seen = await events(page);
      if (seen.includes(line)) return seen;
      if (Date.now() > deadline) throw new Error(`never saw ${JSON.stringify(line)}; saw ${JSON.stringify(seen)}\n${consoleLines.join('\n')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  const trigger = async (channel: string, name: string, data: unknown): Promise<number> => (await triggerEvent(h.port, [channel], name, data)).status;

  it('two people: presence, a private event, a whisper, leaving', async () => {
    const alice = await person('alice');
    await until(alice.page, 'here Alice');
    const bob = await person('bob');
    assert.ok((await until(bob.page, 'here Alice,Bob')).every((l) => !l.includes('error')));
    await until(alice.page, 'joining Bob');

    assert.equal(await trigger('private-ok.orders', 'App\\Events\\OrderShipped', { id: 42 }), 200);
    await until(alice.page, 'order 42');
    await until(bob.page, 'order 42');
    assert.equal(await trigger('news', 'Hello', { text: 'hi' }), 200);
    await until(bob.page, 'news hi');

    await bob.page.evaluate(() => (window as unknown as { Echo: { private(c: string): { whisper(e: string, d: unknown): void } } }).Echo.private('ok.orders').whisper('typing', { name: 'Bob' }));
    await until(alice.page, 'typing Bob');
    await screenshot(alice.page, 'pusher-echo');

    await bob.context.close();
    const seen = await until(alice.page, 'leaving Bob');
    assert.deepEqual(seen, ['here Alice', 'joining Bob', 'order 42', 'news hi', 'typing Bob', 'leaving Bob']);
    assert.ok(!(await events(alice.page)).some((l) => l.startsWith('typing Alice')));
  });
});
