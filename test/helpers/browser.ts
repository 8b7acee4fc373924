/**
 * Browser end-to-end helpers: Debian's chromium driven by playwright-core
 * (never a downloaded browser build), and a demo site served by wsfpm in
 * standalone mode (--pages) over a real php-fpm pool of the suite's own.
 *
 * The pool reaches the daemon's control API the way a site's own pool
 * would: `env[WSFPM_CONTROL]` / `env[WSFPM_CONTROL_TOKEN]` lines, here to a
 * unix socket in a temp dir, so page requests (job.php, the chat's login
 * page) can use Wsfpm\Client too, not only bound websocket scripts.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { buildConfig } from '../../src/config.ts';
import { FpmPool } from '../../src/fpm/pool.ts';
import { createDaemon, type Daemon } from '../../src/server/app.ts';
import { logSink, refusal } from './harness.ts';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const EXAMPLES = path.join(REPO, 'examples');
/** Every run's screenshots (git-ignored). */
export const SCREENSHOTS = path.join(REPO, 'test-results', 'screenshots');
/** The README's screenshots, rewritten only when WSFPM_UPDATE_SCREENSHOTS=1, so a test run leaves the tree clean. */
export const README_SCREENSHOTS = path.join(REPO, 'docs', 'img');

/** Debian's package (apt-get install chromium); WSFPM_CHROMIUM overrides. */
export const CHROMIUM = process.env.WSFPM_CHROMIUM ?? '/usr/bin/chromium';

/**
 * Why the browser tests are skipped here, or null when they run. On CI
 * (CI=true) they always run: a missing browser there must fail, not pass quietly.
 */
export function browserMissing(): string | null {
  if (existsSync(CHROMIUM) || process.env.CI) return null;
  return `${CHROMIUM} not found: apt-get install chromium (or set WSFPM_CHROMIUM)`;
}

/**
 * Headless chromium with nothing that reaches the network by itself.
 * playwright gives it a fresh temp profile (--user-data-dir) and removes
 * it on close; each newContext() is a separate cookie jar, i.e. a
 * separate PHP session.
 */
export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30_000,
  });
}

export interface Site {
  /** http://127.0.0.1:PORT + path */
  url(p?: string): string;
  port: number;
  daemon: Daemon;
  pool: FpmPool;
  logs: Array<Record<string, unknown>>;
  close(): Promise<void>;
}

/** `wsfpm --pages true --root examples/NAME`, with a php-fpm pool of its own. */
export async function startSite(example: string, workers = 16): Promise<Site> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'wsfpm-browser-'));
  const control = `unix:${path.join(dir, 'control.sock')}`;
  const token = `browser-test-${Math.random().toString(36).slice(2)}-token`;
  const pool = await FpmPool.start({
    maxChildren: workers,
    privateSessions: true,
    inherited: [`env[WSFPM_CONTROL] = ${control}`, `env[WSFPM_CONTROL_TOKEN] = ${token}`],
  });
  const logs: Array<Record<string, unknown>> = [];
  let daemon: Daemon;
  try {
    const config = buildConfig({
      root: path.join(EXAMPLES, example),
      port: '0',
      fpm: `unix:${pool.socket}`,
      pages: 'true',
      control,
      controlToken: token,
      logLevel: 'debug',
    }, {});
    daemon = await createDaemon(config, logSink(logs));
    await daemon.app.listen({ host: '127.0.0.1', port: 0 });
  } catch (err) {
    await pool.stop();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const addr = daemon.app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: (p = '/') => `http://127.0.0.1:${port}${p}`,
    port,
    daemon,
    pool,
    logs,
    close: async () => {
      await daemon.app.close();
      await pool.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Saves test-results/screenshots/NAME.png, and docs/img/NAME.png with WSFPM_UPDATE_SCREENSHOTS=1. */
export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(SCREENSHOTS, { recursive: true });
  const file = path.join(SCREENSHOTS, `${name}.png`);
  const png = await page.screenshot({ path: file });
  if (process.env.WSFPM_UPDATE_SCREENSHOTS === '1') {
    await mkdir(README_SCREENSHOTS, { recursive: true });
    await writeFile(path.join(README_SCREENSHOTS, `${name}.png`), png);
  }
  return file;
}

/** What the browser's console and page errors said, for assertion messages. */
export function recordConsole(page: Page, into: string[], label: string): void {
  page.on('console', (m) => into.push(`${label} console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => into.push(`${label} pageerror: ${e.message}`));
}

/** How long a browser test waits for the page to show something. */
export const WAIT = 10_000;

/**
 * Reads until `ok` holds, or fails after WAIT with the last value and what
 * the pages' consoles said: the pages update when their websockets deliver,
 * which a test can only watch for, not time.
 */
export async function until<T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean, consoleLines: string[] = []): Promise<T> {
  const deadline = Date.now() + WAIT;
  for (;;) {
    const last = await read();
    if (ok(last)) return last;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(last)}\n${consoleLines.join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** What differs between the two chat demos' runs of the same story. */
export interface ChatStory {
  /** examples/NAME */
  example: string;
  /** php-fpm workers of the site's pool */
  workers?: number;
  /** Alice's first line, Bob's reply (with markup that must stay text), Alice's last line. */
  said: [string, string, string];
  /** The screenshot's name, taken once the three lines are in. */
  screenshot: string;
  /** More tests while both are in the room. */
  whileBothIn?: (room: ChatRoom) => void;
  /** More tests once Bob has left. */
  afterwards?: (room: ChatRoom) => void;
}

/** The people of one chat run: each a browser context, so a PHP session, of its own. */
export class ChatRoom {
  site!: Site;
  browser!: Browser;
  alice!: Page;
  bob!: Page;
  readonly contexts: BrowserContext[] = [];
  readonly consoleLines: string[] = [];

  /** A new browser context, logged in as `name`, once its websocket is open (the text box is enabled). */
  async person(name: string): Promise<Page> {
    const context = await this.browser.newContext({ viewport: { width: 1000, height: 620 } });
    this.contexts.push(context);
    const page = await context.newPage();
    recordConsole(page, this.consoleLines, name);
    await page.goto(this.site.url('/'));
    await page.fill('#name', name);
    await page.click('#login');
    await page.waitForSelector('#text:not([disabled])', { timeout: WAIT });
    return page;
  }

  lines = (page: Page): Promise<string[]> => page.locator('#log li').allTextContents();
  members = (page: Page): Promise<string[]> => page.locator('#members li').allTextContents();
  until = <T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean): Promise<T> => until(what, read, ok, this.consoleLines);

  /** Says `text` from `from`'s page and waits until `to` shows it. */
  async say(from: Page, fromName: string, to: Page, text: string, how: 'enter' | 'click' = 'enter'): Promise<void> {
    await from.fill('#text', text);
    if (how === 'enter') await from.press('#text', 'Enter');
    else await from.click('#send');
    await this.until(`${fromName}'s line reaches the other`, () => this.lines(to), (l) => l.includes(fromName + text));
  }
}

/**
 * The chat demo's story in two browsers: a refusal without login, two
 * people joining and listing each other, three lines, the count on the
 * login page, a leave. examples/chat and examples/chat-events serve the
 * same page over the two websocket modes, so both tell it.
 */
export function describeChat(story: ChatStory): void {
  const missing = browserMissing();
  describe(`examples/${story.example} in two browsers`, { skip: missing ?? false, timeout: 120_000 }, () => {
    const room = new ChatRoom();
    const { lines, members, until } = room;

    before(async () => {
      room.site = await startSite(story.example, story.workers);
      room.browser = await launchBrowser();
    });

    after(async () => {
      for (const c of room.contexts) await c.close().catch(() => {});
      await room.browser?.close();
      await room.site?.close();
    });

    it('refuses the websocket to someone who has not logged in', async () => {
      const r = await refusal(`ws://127.0.0.1:${room.site.port}/`);
      assert.equal(r.status, 401);
      assert.equal(r.body, 'log in first');
    });

    it('logs two people in, each sees the other join, and both member lists agree', async () => {
      const alice = (room.alice = await room.person('Alice'));
      await until('Alice sees herself join', () => lines(alice), (l) => l.includes('You joined the room.'));
      await until('Alice lists herself', () => members(alice), (m) => m.join() === 'Alice (you)');

      const bob = (room.bob = await room.person('Bob'));
      await until('Alice sees Bob join', () => lines(alice), (l) => l.includes('Bob joined.'));
      await until('Alice lists both', () => members(alice), (m) => m.join() === 'Alice (you),Bob');
      // Bob learns about Alice from her script's introduction (presence channel + sendTo).
      await until('Bob lists both', () => members(bob), (m) => m.join() === 'Alice,Bob (you)');
      assert.deepEqual(await lines(bob), ['You joined the room.']);
      assert.equal(await alice.textContent('#status'), 'connected');
    });

    it('shows each one the other\'s messages', async () => {
      const { alice, bob } = room;
      const [first, reply, last] = story.said;
      await room.say(alice, 'Alice', bob, first);
      await room.say(bob, 'Bob', alice, reply, 'click');
      await until('Bob sees his own line', () => lines(bob), (l) => l.includes('Bob' + reply));
      assert.equal(await alice.locator('#log b').count(), 0, 'text is shown as text');
      await room.say(alice, 'Alice', bob, last);
      assert.deepEqual(await lines(alice), ['You joined the room.', 'Bob joined.', 'Alice' + first, 'Bob' + reply, 'Alice' + last]);
      await screenshot(alice, story.screenshot);
    });

    it('counts the people in the room on the login page (Client::members from a page request)', async () => {
      const context = await room.browser.newContext();
      room.contexts.push(context);
      const page = await context.newPage();
      await page.goto(room.site.url('/'));
      assert.equal(await page.textContent('#here'), '2 people are chatting right now.');
      await context.close();
    });

    story.whileBothIn?.(room);

    it('announces a leave and updates the member list when a tab closes', async () => {
      await room.bob.context().close();
      await until('Alice sees Bob leave', () => lines(room.alice), (l) => l.at(-1) === 'Bob left.');
      await until('Alice lists herself only', () => members(room.alice), (m) => m.join() === 'Alice (you)');
    });

    story.afterwards?.(room);
  });
}
