/**
 * History and resume against a real php-fpm, in bound and in events mode:
 * a script subscribes through the library with history; publishes while the
 * client is away reach it on its reconnect, in order, before new ones; a
 * stale epoch or a malformed resume position is handled without a close.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { open, startHarness, type Client, type Harness } from './helpers/harness.ts';
import { envelope, publishVia, type Envelope } from './helpers/history.ts';

let h: Harness;

before(async () => {
  h = await startHarness({}, 8);
});
after(async () => h?.close());

const publish = (channel: string, data: string): Promise<void> => publishVia(h.daemon, channel, data);

/** Opens the fixture; returns the client and its first notice (the daemon's, before the script's "ready"). */
async function join(mode: string, room: string, resume = ''): Promise<{ c: Client; first: Envelope }> {
  const c = await open(h.url(`/hist.php?mode=${mode}&room=${room}${resume}`));
  const first = await envelope(c);
  assert.equal(await c.text(), 'ready');
  return { c, first };
}

for (const mode of ['bound', 'events']) {
  describe(`${mode} mode`, () => {
    const room = `hist-${mode}`;

    it('resumes: what was published while away arrives in order, then new messages, each once', async () => {
      const a = await join(mode, room);
      assert.equal(a.first.wsfpm, 'subscribed');
      assert.equal(a.first.offset, 0);
      const epoch = a.first.epoch;
      await publish(room, 'one');
      await publish(room, 'two');
      assert.deepEqual(await envelope(a.c), { wsfpm: 'message', channel: room, epoch, offset: 1, data: 'one' });
      assert.deepEqual(await envelope(a.c), { wsfpm: 'message', channel: room, epoch, offset: 2, data: 'two' });
      a.c.ws.close();
      await a.c.closed;

      await publish(room, 'three');
      await publish(room, 'four');
      const b = await open(h.url(`/hist.php?mode=${mode}&room=${room}&wsfpm_resume=${epoch}.2.${room}`));
      assert.deepEqual(await envelope(b), { wsfpm: 'message', channel: room, epoch, offset: 3, data: 'three' });
      assert.deepEqual(await envelope(b), { wsfpm: 'message', channel: room, epoch, offset: 4, data: 'four' });
      assert.deepEqual(await envelope(b), { wsfpm: 'recovered', channel: room, epoch, offset: 4, missed: 2 });
      assert.equal(await b.text(), 'ready');
      await publish(room, 'five');
      assert.deepEqual(await envelope(b), { wsfpm: 'message', channel: room, epoch, offset: 5, data: 'five' });
      assert.equal(b.messages.length, 0);
      b.ws.close();
      await b.closed;
    });

    it('a stale epoch is told it lost the history; a malformed position is ignored with one log line', async () => {
      const stale = await join(mode, room, `&wsfpm_resume=0ld.1.${room}`);
      assert.equal(stale.first.wsfpm, 'lost');
      assert.ok(stale.first.offset >= 5);
      stale.c.ws.close();
      const before = h.logs.filter((l) => l.code === 'WSFPM_ERR_BAD_RESUME').length;
      const odd = await join(mode, room, `&wsfpm_resume=${encodeURIComponent('NOT AN.EPOCH')}&wsfpm_resume=ab.x.${room}`);
      assert.equal(odd.first.wsfpm, 'subscribed');
      assert.equal(h.logs.filter((l) => l.code === 'WSFPM_ERR_BAD_RESUME').length, before + 1);
      odd.c.ws.close();
      await Promise.all([stale.c.closed, odd.c.closed]);
    });
  });
}

it('bound mode: a script\'s own PUBLISH on a history channel reaches its client as an envelope with the next offset', async () => {
  const a = await join('bound', 'hist-self');
  a.c.ws.send('pub|from php');
  assert.deepEqual(await envelope(a.c), { wsfpm: 'message', channel: 'hist-self', epoch: a.first.epoch, offset: 1, data: 'from php' });
  a.c.ws.close();
  await a.c.closed;
});
