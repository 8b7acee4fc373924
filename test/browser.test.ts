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
import type { Browser } from 'playwright-core';
import { browserMissing, describeChat, launchBrowser, recordConsole, screenshot, startSite, WAIT, type Site } from './helpers/browser.ts';

const missing = browserMissing();

describeChat({
  example: 'chat',
  said: ['Hi Bob! Is the websocket really PHP?', 'Yes: one php-fpm request per connection <b>no HTML injection</b> ✓', 'Nice. Let me show the others.'],
  screenshot: 'chat',
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
