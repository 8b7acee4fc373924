/**
 * The demos in a real browser (Debian's chromium through playwright-core):
 * two people chat through examples/chat, and examples/progress fills its
 * bar from a background job. Each demo is served by wsfpm alone (--pages),
 * pages and websockets on one port, over a real php-fpm pool. Screenshots
 * land in test-results/screenshots/; `WSFPM_UPDATE_SCREENSHOTS=1` also
 * rewrites the README's docs/img/chat.png and progress.png.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { refusal } from './helpers/harness.ts';
import { browserMissing, launchBrowser, recordConsole, screenshot, startSite, type Site } from './helpers/browser.ts';

const missing = browserMissing();
const WAIT = 10_000;

describe('examples/chat in two browsers', { skip: missing ?? false, timeout: 120_000 }, () => {
  let site: Site;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const consoleLines: string[] = [];

  before(async () => {
    site = await startSite('chat');
    browser = await launchBrowser();
  });

  after(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
    await site?.close();
  });

  /** A new browser context (own cookies, so its own PHP session), logged in as `name`. */
  async function person(name: string): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1000, height: 620 } });
    contexts.push(context);
    const page = await context.newPage();
    recordConsole(page, consoleLines, name);
    await page.goto(site.url('/'));
    await page.fill('#name', name);
    await page.click('#login');
    await page.waitForSelector('#text:not([disabled])', { timeout: WAIT });
    return page;
  }

  const lines = (page: Page) => page.locator('#log li').allTextContents();
  const members = (page: Page) => page.locator('#members li').allTextContents();

  async function until<T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean): Promise<T> {
    const deadline = Date.now() + WAIT;
    let last: T;
    for (;;) {
      last = await read();
      if (ok(last)) return last;
      if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(last)}\n${consoleLines.join('\n')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  let alice: Page;
  let bob: Page;

  it('refuses the websocket to someone who has not logged in', async () => {
    const r = await refusal(`ws://127.0.0.1:${site.port}/`);
    assert.equal(r.status, 401);
    assert.equal(r.body, 'log in first');
  });

  it('logs two people in, each sees the other join, and both member lists agree', async () => {
    alice = await person('Alice');
    await until('Alice sees herself join', () => lines(alice), (l) => l.includes('You joined the room.'));
    await until('Alice lists herself', () => members(alice), (m) => m.join() === 'Alice (you)');

    bob = await person('Bob');
    await until('Alice sees Bob join', () => lines(alice), (l) => l.includes('Bob joined.'));
    await until('Alice lists both', () => members(alice), (m) => m.join() === 'Alice (you),Bob');
    // Bob learns about Alice from her script's introduction (presence channel + sendTo).
    await until('Bob lists both', () => members(bob), (m) => m.join() === 'Alice,Bob (you)');
    assert.deepEqual(await lines(bob), ['You joined the room.']);
    assert.equal(await alice.textContent('#status'), 'connected');
  });

  it('shows each one the other\'s messages', async () => {
    await alice.fill('#text', 'Hi Bob! Is the websocket really PHP?');
    await alice.press('#text', 'Enter');
    await until('Bob gets Alice\'s message', () => lines(bob), (l) => l.includes('AliceHi Bob! Is the websocket really PHP?'));

    await bob.fill('#text', 'Yes: one php-fpm request per connection <b>no HTML injection</b> ✓');
    await bob.click('#send');
    const expected = 'BobYes: one php-fpm request per connection <b>no HTML injection</b> ✓';
    await until('Alice gets Bob\'s reply', () => lines(alice), (l) => l.includes(expected));
    await until('Bob sees his own line', () => lines(bob), (l) => l.includes(expected));
    assert.equal(await alice.locator('#log b').count(), 0, 'text is shown as text');

    await alice.fill('#text', 'Nice. Let me show the others.');
    await alice.press('#text', 'Enter');
    await until('Bob gets the third line', () => lines(bob), (l) => l.includes('AliceNice. Let me show the others.'));
    assert.deepEqual(await lines(alice), [
      'You joined the room.',
      'Bob joined.',
      'AliceHi Bob! Is the websocket really PHP?',
      expected,
      'AliceNice. Let me show the others.',
    ]);
    await screenshot(alice, 'chat');
  });

  it('counts the people in the room on the login page (Client::members from a page request)', async () => {
    const context = await browser.newContext();
    contexts.push(context);
    const page = await context.newPage();
    await page.goto(site.url('/'));
    assert.equal(await page.textContent('#here'), '2 people are chatting right now.');
    await context.close();
  });

  it('announces a leave and updates the member list when a tab closes', async () => {
    await bob.context().close();
    await until('Alice sees Bob leave', () => lines(alice), (l) => l.at(-1) === 'Bob left.');
    await until('Alice lists herself only', () => members(alice), (m) => m.join() === 'Alice (you)');
  });
});

describe('examples/progress in a browser', { skip: missing ?? false, timeout: 120_000 }, () => {
  let site: Site;
  let browser: Browser;
  const consoleLines: string[] = [];

  before(async () => {
    site = await startSite('progress');
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await site?.close();
  });

  it('fills the bar to 100% from a background job that pushes to this tab only', async () => {
    const context = await browser.newContext({ viewport: { width: 900, height: 560 } });
    const page = await context.newPage();
    recordConsole(page, consoleLines, 'progress');
    await page.goto(site.url('/'));
    await page.waitForSelector('#start:not([disabled])', { timeout: WAIT });
    const id = (await page.textContent('#tab'))!.replace('this tab is connection ', '');
    assert.match(id, /^[0-9a-f]{32}$/);

    // Another session cannot aim the job at this tab.
    const stranger = await browser.newContext();
    const other = await stranger.newPage();
    await other.goto(site.url('/'));
    const refused = await other.evaluate(async (target) => {
      const r = await fetch('job.php', { method: 'POST', body: new URLSearchParams({ id: target }) });
      return { status: r.status, body: await r.json() };
    }, id);
    assert.deepEqual(refused, { status: 403, body: { error: 'not a connection of this session' } });
    await stranger.close();

    const seen = new Set<number>();
    await page.exposeFunction('recordPercent', (p: number) => void seen.add(p));
    await page.evaluate(() => {
      const bar = document.getElementById('bar') as HTMLProgressElement;
      new MutationObserver(() => (window as unknown as { recordPercent(p: number): void }).recordPercent(bar.value)).observe(document.getElementById('percent')!, { childList: true, characterData: true, subtree: true });
    });
    await page.click('#start');
    await page.waitForFunction(() => (document.getElementById('bar') as HTMLProgressElement).value >= 50, null, { timeout: WAIT });
    await page.waitForFunction(() => document.getElementById('status')!.textContent!.startsWith('done'), null, { timeout: 20_000 });
    assert.equal(await page.textContent('#percent'), '100%');
    assert.equal(await page.evaluate(() => (document.getElementById('bar') as HTMLProgressElement).value), 100);
    assert.equal(await page.locator('#steps li').count(), 20);
    assert.ok([...seen].filter((p) => p > 0 && p < 100).length >= 5, `the bar moved in steps, not at once: ${[...seen].join(',')} ${consoleLines.join('\n')}`);
    await screenshot(page, 'progress');
    await context.close();
  });
});
