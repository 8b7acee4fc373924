/**
 * examples/chat-events in a real browser: the chat demo with events-mode
 * websockets (the same page as examples/chat), two people in two browser
 * contexts, so two PHP sessions, served by wsfpm alone (--pages) over a
 * real php-fpm pool. The story is the bound chat's (helpers/browser.ts),
 * plus what events mode is for and what it changes: with both tabs open
 * and quiet no php-fpm worker is busy, and since every event reads the
 * session again, a logout in another tab ends the websocket at its next
 * message.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { readPoolStatus } from '../src/fpm/status.ts';
import { describeChat } from './helpers/browser.ts';

describeChat({
  example: 'chat-events',
  workers: 4,
  said: ['Hi Bob! No PHP worker is waiting for us.', 'One short request per line <b>still no HTML injection</b> ✓', 'And one for each join and leave.'],
  screenshot: 'chat-events',

  whileBothIn(room) {
    it('holds both websockets with no php-fpm worker busy', async () => {
      // Bound mode keeps one worker per open tab busy for as long as the tab is open.
      const busy = async () => (await readPoolStatus({ kind: 'unix', path: room.site.pool.statusSocket })).active;
      await room.until('no worker busy', busy, (n) => n === 0);
      assert.equal(await room.alice.textContent('#status'), 'connected');
      assert.equal(await room.bob.textContent('#status'), 'connected');
      // And the room still works after the quiet spell: each line is an event again.
      await room.say(room.bob, 'Bob', room.alice, 'still here');
    });
  },

  afterwards(room) {
    it('closes a tab whose session logged out elsewhere, at its next message (the session is read in every event)', async () => {
      const other = await room.alice.context().newPage();
      await other.goto(room.site.url('/'));
      await other.click('header form button'); // "Leave as Alice": the session forgets the name
      await other.waitForSelector('#name');
      await room.alice.fill('#text', 'anyone?');
      await room.alice.press('#text', 'Enter');
      await room.until('Alice\'s tab is closed with 4001', () => room.alice.textContent('#status'), (s) => s?.startsWith('disconnected (4001)') ?? false);
      assert.ok(!(await room.lines(room.alice)).includes('Aliceanyone?'), 'the line of a logged-out tab is not published');
    });
  },
});
