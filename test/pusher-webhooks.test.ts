/**
 * Webhooks run as a PHP script through php-fpm (webhook=/pusher/webhook.php):
 * the script checks Pusher's signature itself and records what it got.
 */
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { after, before, it } from 'node:test';
import { open, startHarness, type Client, type Harness } from './helpers/harness.ts';

const KEY = `hook-${randomBytes(6).toString('hex')}`;
const SECRET = 'hook-secret-0123456789';
const LOG = `/tmp/wsfpm-webhook-${KEY}.jsonl`;
let h: Harness;

before(async () => {
  h = await startHarness({ pusherApps: `hooks:${KEY}:${SECRET}:client-events:webhook=/pusher/webhook.php,broken:broken-key:${SECRET}:webhook=/pusher/no-such-script.php` }, 6);
});
after(async () => {
  await h?.close();
  await rm(LOG, { force: true });
});

type Hook = { name: string; channel: string; user_id?: string; event?: string; data?: string; socket_id?: string };

/** The events the script has recorded, once `done` says they are all there. */
async function recorded(done: (events: Hook[]) => boolean): Promise<Hook[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const lines = (await readFile(LOG, 'utf8').catch(() => '')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { valid: boolean; method: string; body: { time_ms: number; events: Hook[] } });
    for (const l of lines) {
      assert.equal(l.valid, true, 'the script verified the signature');
      assert.equal(l.method, 'POST');
      assert.ok(Math.abs(l.body.time_ms - Date.now()) < 60_000);
    }
    const events = lines.flatMap((l) => l.body.events);
    if (done(events)) return events;
    if (Date.now() > deadline) throw new Error(`webhooks so far: ${JSON.stringify(events)}\n${JSON.stringify(h.logs.filter((l) => String(l.code ?? '').includes('WEBHOOK')))}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const sign = (text: string) => `${KEY}:${createHmac('sha256', SECRET).update(text).digest('hex')}`;

it('channel_occupied/vacated, member_added/removed and client_event reach the PHP script, signed', async () => {
  const c: Client = await open(h.url(`/app/${KEY}?protocol=7`));
  const socketId = (JSON.parse((JSON.parse(await c.text()) as { data: string }).data) as { socket_id: string }).socket_id;
  c.ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: 'hooked' } }));
  await c.text();
  const channelData = JSON.stringify({ user_id: 'u1', user_info: {} });
  c.ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: 'presence-hooked', auth: sign(`${socketId}:presence-hooked:${channelData}`), channel_data: channelData } }));
  assert.equal((JSON.parse(await c.text()) as { event: string }).event, 'pusher_internal:subscription_succeeded');
  c.ws.send(JSON.stringify({ event: 'client-typing', channel: 'presence-hooked', data: { on: true } }));
  c.ws.send(JSON.stringify({ event: 'pusher:unsubscribe', data: { channel: 'hooked' } }));
  await recorded((e) => e.some((x) => x.name === 'channel_vacated'));
  c.ws.close();
  const events = await recorded((e) => e.some((x) => x.name === 'member_removed') && e.filter((x) => x.name === 'channel_vacated').length === 2);
  const byChannel = (channel: string) => events.filter((e) => e.channel === channel).map((e) => e.name);
  assert.deepEqual(byChannel('hooked'), ['channel_occupied', 'channel_vacated']);
  assert.deepEqual(byChannel('presence-hooked').sort(), ['channel_occupied', 'channel_vacated', 'client_event', 'member_added', 'member_removed']);
  assert.deepEqual(events.find((e) => e.name === 'client_event'), { name: 'client_event', channel: 'presence-hooked', event: 'client-typing', data: '{"on":true}', socket_id: socketId, user_id: 'u1' });
  assert.deepEqual(events.find((e) => e.name === 'member_added'), { name: 'member_added', channel: 'presence-hooked', user_id: 'u1' });
  assert.ok(!h.logs.some((l) => l.code === 'WSFPM_ERR_PUSHER_WEBHOOK' && l.app === 'hooks'), 'no webhook of this app failed');
});

it('a webhook script that fails is one log line, and the connection carries on', async () => {
  const c = await open(h.url('/app/broken-key?protocol=7'));
  await c.text();
  c.ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: 'broken-hook' } }));
  assert.equal((JSON.parse(await c.text()) as { event: string }).event, 'pusher_internal:subscription_succeeded');
  const deadline = Date.now() + 10_000;
  while (!h.logs.some((l) => l.code === 'WSFPM_ERR_PUSHER_WEBHOOK' && l.app === 'broken')) {
    assert.ok(Date.now() < deadline, 'no log line for the failed webhook');
    await new Promise((r) => setTimeout(r, 50));
  }
  const line = h.logs.find((l) => l.code === 'WSFPM_ERR_PUSHER_WEBHOOK')!;
  assert.equal(line.status, 404);
  c.ws.send('{"event":"pusher:ping","data":{}}');
  assert.equal((JSON.parse(await c.text()) as { event: string }).event, 'pusher:pong');
  c.ws.close();
});
