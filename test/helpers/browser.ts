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
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { buildConfig } from '../../src/config.ts';
import { FpmPool } from '../../src/fpm/pool.ts';
import { createDaemon, type Daemon } from '../../src/server/app.ts';
import { logSink } from './harness.ts';

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
