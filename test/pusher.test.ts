/**
 * The Pusher protocol face against the real pusher-js (the client
 * laravel-echo runs), a real daemon and a real php-fpm: the channel auth
 * endpoint and one publisher are PHP pages the daemon serves (--pages true,
 * test/fixtures/www/pusher/). The HTTP API signatures the tests make are
 * written from Pusher's documented algorithm, not taken from a library.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { buildConfig } from '../src/config.ts';
import { createDaemon } from '../src/server/app.ts';
import { FIXTURES, logSink, open, startHarness, startPool, withTimeout, type Client, type Harness } from './helpers/harness.ts';
import { APP_ID, KEY, Pusher, SECRET, connectPusher, next, pusherApi, signedUrl, subscribed, triggerEvent, type Channel, type SignOptions } from './helpers/pusher.ts';

const APPS = `${APP_ID}:${KEY}:${SECRET}:client-events,quiet-app:quiet-key:quiet-secret-0123456789`;

let h: Harness;
const clients: Pusher[] = [];

before(async () => {
  h = await startHarness({ pusherApps: APPS, pages: 'true' }, 10);
});
after(async () => {
  for (const c of clients) c.disconnect();
  await h?.close();
});

const connect = (user = 'alice', key = KEY, port = h.port) => connectPusher(port, user, key, clients);
const signed = (method: string, path: string, body: string, options?: SignOptions) => signedUrl(h.port, method, path, body, options);
const api = (method: 'GET' | 'POST', path: string, body?: unknown, options?: SignOptions) => pusherApi(h.port, method, path, body, options);
const trigger = (channels: string[], name: string, data: unknown, extra?: Record<string, unknown>) => triggerEvent(h.port, channels, name, data, extra);

/** A raw protocol-7 client, for what pusher-js never sends. */
async function raw(key = KEY, query = '?protocol=7&client=js&version=8.6.0'): Promise<{ c: Client; socketId: string }> {
  const c = await open(h.url(`/app/${key}${query}`));
  const hello = JSON.parse(await c.text()) as { event: string; data: string };
  assert.equal(hello.event, 'pusher:connection_established');
  const data = JSON.parse(hello.data) as { socket_id: string; activity_timeout: number };
  assert.match(data.socket_id, /^\d+\.\d+$/);
  assert.equal(data.activity_timeout, 120);
  return { c, socketId: data.socket_id };
}

async function event(c: Client): Promise<{ event: string; channel?: string; data: unknown; user_id?: string }> {
  return JSON.parse(await c.text()) as { event: string; channel?: string; data: unknown };
}

describe('public channels', () => {
  it('delivers HTTP API events signed by the test, to every subscriber but the excluded socket', async () => {
    const a = await connect();
    const b = await connect();
    const ca = await subscribed(a, 'news');
    const cb = await subscribed(b, 'news');
    const gotA = next<{ text: string }>(ca, 'App\\Events\\Hello');
    const gotB = next<{ text: string }>(cb, 'App\\Events\\Hello');
    assert.deepEqual(await trigger(['news'], 'App\\Events\\Hello', { text: 'hi' }), { status: 200, json: {} });
    assert.deepEqual(await gotA, { text: 'hi' });
    assert.deepEqual(await gotB, { text: 'hi' });
    // socket_id: the sender's own tab does not get its echo (Laravel's ->toOthers()).
    const onlyA: string[] = [];
    ca.bind('update', (d: { n: number }) => onlyA.push(`a${d.n}`));
    const bGotSecond = next<{ n: number }>(cb, 'update');
    assert.equal((await trigger(['news'], 'update', { n: 1 }, { socket_id: a.connection.socket_id })).status, 200);
    assert.deepEqual(await bGotSecond, { n: 1 });
    const aGotThird = next<{ n: number }>(ca, 'update');
    await trigger(['news'], 'update', { n: 2 });
    assert.deepEqual(await aGotThird, { n: 2 });
    assert.deepEqual(onlyA, ['a2'], 'the excluded socket got only the later event');
  });

  it('delivers events the PHP page signs from Pusher\'s documented algorithm', async () => {
    const a = await connect();
    const ca = await subscribed(a, 'php-news');
    const got = next<{ text: string }>(ca, 'App\\Events\\Hello');
    const res = await fetch(`http://127.0.0.1:${h.port}/pusher/publish.php?port=${h.port}&channel=php-news&data=from-php`);
    assert.match(await res.text(), /^HTTP\/1\.1 200 OK\n\{\}$/);
    assert.deepEqual(await got, { text: 'from-php' });
  });

  it('answers 401 to a bad signature and delivers nothing', async () => {
    const a = await connect();
    const ca = await subscribed(a, 'guarded');
    const seen: unknown[] = [];
    ca.bind('App\\Events\\Hello', (d: unknown) => seen.push(d));
    ca.bind('forged', (d: unknown) => seen.push(d));
    const fromPhp = await (await fetch(`http://127.0.0.1:${h.port}/pusher/publish.php?port=${h.port}&channel=guarded&secret=not-the-secret-at-all`)).text();
    assert.match(fromPhp, /^HTTP\/1\.1 401 /);
    const body = JSON.stringify({ name: 'forged', data: '{}', channels: ['guarded'] });
    const wrongSecret = await api('POST', `/apps/${APP_ID}/events`, JSON.parse(body), { secret: 'wrong-secret-0123456789' });
    assert.equal(wrongSecret.status, 401);
    assert.equal(wrongSecret.json.code, 'WSFPM_ERR_PUSHER_SIGNATURE');
    // A signed request whose body was changed on the way: body_md5 no longer matches.
    const tampered = await fetch(signed('POST', `/apps/${APP_ID}/events`, body), { method: 'POST', headers: { 'content-type': 'application/json' }, body: body.replace('guarded', 'guarded') + ' ' });
    assert.equal(tampered.status, 401);
    // Too old (over 600 s), and another app's key.
    assert.equal((await api('POST', `/apps/${APP_ID}/events`, JSON.parse(body), { timestamp: Math.floor(Date.now() / 1000) - 700 })).status, 401);
    assert.equal((await api('POST', `/apps/${APP_ID}/events`, JSON.parse(body), { key: 'quiet-key', secret: 'quiet-secret-0123456789' })).status, 401);
    assert.equal((await api('GET', `/apps/${APP_ID}/channels`, undefined, { secret: 'wrong-secret-0123456789' })).status, 401);
    // Then a genuine event: it is the first thing the subscriber sees.
    const first = next(ca, 'genuine');
    await trigger(['guarded'], 'genuine', { ok: true });
    assert.deepEqual(await first, { ok: true });
    assert.deepEqual(seen, [], 'no refused request reached the subscriber');
    assert.ok(h.logs.some((l) => l.code === 'WSFPM_ERR_PUSHER_SIGNATURE' && l.detail === 'body_md5 does not match the body'));
  });

  it('refuses malformed API requests with 400', async () => {
    assert.equal((await api('POST', `/apps/${APP_ID}/events`, { name: 'x', data: { not: 'a string' }, channels: ['a'] })).status, 400);
    assert.equal((await api('POST', `/apps/${APP_ID}/events`, { name: 'x', data: '1', channels: Array.from({ length: 101 }, (_, i) => `c${i}`) })).status, 400);
    assert.equal((await api('POST', `/apps/${APP_ID}/events`, { name: 'x', data: '1', channels: ['has space'] })).status, 400);
    assert.equal((await api('POST', `/apps/${APP_ID}/batch_events`, { batch: Array.from({ length: 11 }, () => ({ name: 'x', data: '1', channel: 'a' })) })).status, 400);
    const notJson = await fetch(signed('POST', `/apps/${APP_ID}/events`, '{nope'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{nope' });
    assert.equal(notJson.status, 400);
  });

  it('batch_events, channel lists and channel info', async () => {
    const a = await connect();
    const c1 = await subscribed(a, 'batch-1');
    const c2 = await subscribed(a, 'batch-2');
    const got1 = next(c1, 'one');
    const got2 = next(c2, 'two');
    assert.deepEqual(await api('POST', `/apps/${APP_ID}/batch_events`, { batch: [{ channel: 'batch-1', name: 'one', data: '1' }, { channel: 'batch-2', name: 'two', data: '"2"' }] }), { status: 200, json: {} });
    assert.equal(await got1, 1);
    assert.equal(await got2, '2');
    const list = await api('GET', `/apps/${APP_ID}/channels`, undefined, { query: { filter_by_prefix: 'batch-' } });
    assert.deepEqual(list, { status: 200, json: { channels: { 'batch-1': {}, 'batch-2': {} } } });
    assert.deepEqual((await api('GET', `/apps/${APP_ID}/channels/batch-1`, undefined, { query: { info: 'subscription_count' } })).json, { occupied: true, subscription_count: 1 });
    assert.deepEqual((await api('GET', `/apps/${APP_ID}/channels/nobody-here`)).json, { occupied: false });
    assert.equal((await api('GET', `/apps/${APP_ID}/channels`, undefined, { query: { info: 'user_count' } })).status, 400, 'user_count needs a presence- prefix');
    // "info" on a publish: the counts right after it.
    const counted = await api('POST', `/apps/${APP_ID}/events`, { name: 'counted', data: '1', channels: ['batch-1', 'nobody-here'], info: 'subscription_count' });
    assert.deepEqual(counted, { status: 200, json: { channels: { 'batch-1': { subscription_count: 1 }, 'nobody-here': { subscription_count: 0 } } } });
    assert.deepEqual((await api('POST', `/apps/${APP_ID}/batch_events`, { batch: [{ channel: 'batch-2', name: 'x', data: '1', info: 'subscription_count' }] })).json, { batch: [{ subscription_count: 1 }] });
    assert.equal((await api('POST', `/apps/${APP_ID}/events`, { name: 'x', data: '1', channels: ['batch-1'], info: 'user_count' })).status, 400, 'user_count is for presence channels');
    assert.equal((await api('POST', `/apps/${APP_ID}/events`, { name: 'x', data: '1', channels: ['batch-1'], info: 'colour' })).status, 400);
  });
});

describe('private channels', () => {
  it('subscribes with the signature the PHP auth page makes, and refuses others', async () => {
    const a = await connect();
    const channel = await subscribed(a, 'private-ok.orders.42');
    const got = next<{ id: number }>(channel, 'OrderShipped');
    await trigger(['private-ok.orders.42'], 'OrderShipped', { id: 42 });
    assert.deepEqual(await got, { id: 42 });
    // The page refuses this channel (403): pusher-js reports it without asking the server.
    const refused = a.subscribe('private-no.1');
    const error = await next<{ status: number }>(refused, 'pusher:subscription_error');
    assert.equal(error.status, 403);
  });

  it('refuses a forged or missing auth signature with pusher:subscription_error 401', async () => {
    const { c, socketId } = await raw();
    const good = `${KEY}:${createHmac('sha256', SECRET).update(`${socketId}:private-ok.x`).digest('hex')}`;
    for (const auth of [undefined, `${KEY}:${'0'.repeat(64)}`, `${KEY}:${createHmac('sha256', SECRET).update(`${socketId}:private-ok.y`).digest('hex')}`, `${KEY}:${createHmac('sha256', SECRET).update(`1.1:private-ok.x`).digest('hex')}`, `quiet-key:${createHmac('sha256', 'quiet-secret-0123456789').update(`${socketId}:private-ok.x`).digest('hex')}`, good.toUpperCase(), { not: 'a string' }]) {
      c.ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: 'private-ok.x', auth } }));
      assert.deepEqual(await event(c), { event: 'pusher:subscription_error', channel: 'private-ok.x', data: { type: 'AuthError', error: 'invalid signature', status: 401 } });
    }
    c.ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: 'private-ok.x', auth: good } }));
    assert.deepEqual(await event(c), { event: 'pusher_internal:subscription_succeeded', channel: 'private-ok.x', data: '{}' });
    c.ws.close();
  });
});

describe('presence channels', () => {
  it('lists members on subscribe, adds and removes them, one member per user across tabs', async () => {
    const alice = await connect('alice');
    const ca = await alice.subscribe('presence-ok.room') as unknown as Channel & { members: { count: number; each(f: (m: { id: string; info: unknown }) => void): void } };
    await next(ca, 'pusher:subscription_succeeded');
    assert.equal(ca.members.count, 1);

    const added = next<{ id: string; info: unknown }>(ca, 'pusher:member_added');
    const bob1 = await connect('bob');
    const cb1 = bob1.subscribe('presence-ok.room') as typeof ca;
    await next(cb1, 'pusher:subscription_succeeded');
    assert.deepEqual(await added, { id: 'bob', info: { name: 'Bob' } });
    const bobSees: Array<{ id: string; info: unknown }> = [];
    cb1.members.each((m: { id: string; info: unknown }) => bobSees.push({ id: m.id, info: m.info }));
    assert.deepEqual(bobSees.sort((x, y) => x.id.localeCompare(y.id)), [{ id: 'alice', info: { name: 'Alice' } }, { id: 'bob', info: { name: 'Bob' } }]);

    // Bob's second tab: no member_added for anyone, and still two users.
    const aliceEvents: string[] = [];
    ca.bind('pusher:member_added', (m: { id: string }) => aliceEvents.push(`added ${m.id}`));
    ca.bind('pusher:member_removed', (m: { id: string }) => aliceEvents.push(`removed ${m.id}`));
    const bob2 = await connect('bob');
    const cb2 = bob2.subscribe('presence-ok.room') as typeof ca;
    await next(cb2, 'pusher:subscription_succeeded');
    assert.equal(cb2.members.count, 2);
    const users = await api('GET', `/apps/${APP_ID}/channels/presence-ok.room/users`);
    assert.deepEqual(users.json, { users: [{ id: 'alice' }, { id: 'bob' }] });
    assert.deepEqual((await api('GET', `/apps/${APP_ID}/channels/presence-ok.room`, undefined, { query: { info: 'user_count,subscription_count' } })).json, { occupied: true, user_count: 2, subscription_count: 3 });
    assert.deepEqual((await api('GET', `/apps/${APP_ID}/channels`, undefined, { query: { filter_by_prefix: 'presence-ok.', info: 'user_count' } })).json, { channels: { 'presence-ok.room': { user_count: 2 } } });

    // One tab of Bob's closes: he stays. The last one closes: he leaves.
    bob1.disconnect();
    const removed = next<{ id: string }>(ca, 'pusher:member_removed');
    bob2.disconnect();
    assert.equal((await removed).id, 'bob');
    assert.deepEqual(aliceEvents, ['removed bob'], 'closing the first tab changed nothing for alice');
    assert.equal(ca.members.count, 1);
    assert.deepEqual((await api('GET', `/apps/${APP_ID}/channels/presence-ok.room/users`)).json, { users: [{ id: 'alice' }] });
  });
});

describe('client events', () => {
  it('go to the other members of a private or presence channel, never back to the sender', async () => {
    const alice = await connect('alice');
    const bob = await connect('bob');
    const ca = await subscribed(alice, 'private-ok.chat');
    const cb = await subscribed(bob, 'private-ok.chat');
    const echoed: unknown[] = [];
    ca.bind('client-typing', (d: unknown) => echoed.push(d));
    const got = next<{ typing: boolean }>(cb, 'client-typing');
    assert.equal(ca.trigger('client-typing', { typing: true }), true);
    assert.deepEqual(await got, { typing: true });

    const pa = await subscribed(alice, 'presence-ok.chat');
    const pb = await subscribed(bob, 'presence-ok.chat');
    const withUser = withTimeout(new Promise<{ data: unknown; userId: string | undefined }>((resolve) => {
      pb.bind('client-wave', (data: unknown, meta: { user_id?: string }) => resolve({ data, userId: meta?.user_id }));
    }), 10_000, 'client-wave');
    pa.trigger('client-wave', { hi: 1 });
    assert.deepEqual(await withUser, { data: { hi: 1 }, userId: 'alice' });
    // Bob answers; alice got none of her own events in the meantime.
    const answer = next(ca, 'client-typing');
    cb.trigger('client-typing', { typing: false });
    assert.deepEqual(await answer, { typing: false });
    assert.deepEqual(echoed, [{ typing: false }]);
  });

  it('are refused with pusher:error: app without client events, public channel, not a member, over size, over rate', async () => {
    const quiet = await raw('quiet-key');
    quiet.c.ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: 'private-q', auth: `quiet-key:${createHmac('sha256', 'quiet-secret-0123456789').update(`${quiet.socketId}:private-q`).digest('hex')}` } }));
    assert.equal((await event(quiet.c)).event, 'pusher_internal:subscription_succeeded');
    quiet.c.ws.send(JSON.stringify({ event: 'client-x', channel: 'private-q', data: {} }));
    assert.deepEqual(await event(quiet.c), { event: 'pusher:error', data: { code: 4301, message: 'Client event rejected' } });
    quiet.c.ws.close();

    const { c, socketId } = await raw();
    const bob = await raw();
    const sub = (who: { c: Client; socketId: string }, channel: string) => who.c.ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel, auth: `${KEY}:${createHmac('sha256', SECRET).update(`${who.socketId}:${channel}`).digest('hex')}` } }));
    sub({ c, socketId }, 'private-ok.limits');
    assert.equal((await event(c)).event, 'pusher_internal:subscription_succeeded');
    sub(bob, 'private-ok.limits');
    assert.equal((await event(bob.c)).event, 'pusher_internal:subscription_succeeded');
    c.ws.send(JSON.stringify({ event: 'client-x', channel: 'public-one', data: {} }));
    assert.deepEqual(await event(c), { event: 'pusher:error', data: { code: 4301, message: 'Client event rejected' } });
    c.ws.send(JSON.stringify({ event: 'client-x', channel: 'private-ok.elsewhere', data: {} }));
    assert.deepEqual(await event(c), { event: 'pusher:error', data: { code: 4009, message: 'Connection is unauthorized' } });
    c.ws.send(JSON.stringify({ event: 'client-big', channel: 'private-ok.limits', data: { blob: 'x'.repeat(20_000) } }));
    assert.deepEqual(await event(c), { event: 'pusher:error', data: { code: 4301, message: 'Client event rejected' } });
    assert.ok(h.logs.some((l) => l.code === 'WSFPM_ERR_PUSHER_CLIENT_EVENT' && /over 10240/.test(String(l.detail))));

    // A burst of 30 in one write: the bucket holds 10 a second, so most are refused with the rate error.
    for (let i = 0; i < 30; i++) c.ws.send(JSON.stringify({ event: 'client-n', channel: 'private-ok.limits', data: { i } }));
    // A ping after the burst: its pong comes after every answer to the burst.
    c.ws.send(JSON.stringify({ event: 'pusher:ping', data: {} }));
    let rateErrors = 0;
    for (;;) {
      const m = await event(c);
      if (m.event === 'pusher:pong') break;
      assert.deepEqual(m, { event: 'pusher:error', data: { code: 4301, message: 'Client event rejected due to rate limit' } });
      rateErrors++;
    }
    // Then a marker through the API: bob has everything that was delivered before it.
    await trigger(['private-ok.limits'], 'marker', {});
    let delivered = 0;
    for (;;) {
      const m = await event(bob.c);
      if (m.event === 'marker') break;
      assert.equal(m.event, 'client-n');
      delivered++;
    }
    assert.equal(delivered + rateErrors, 30);
    assert.ok(rateErrors >= 15, `${rateErrors} refused of 30`);
    c.ws.close();
    bob.c.ws.close();
  });
});

describe('user authentication (pusher:signin)', () => {
  it('signs in through the PHP page and gets the events sent to its user, on every tab', async () => {
    type User = { signinDonePromise: Promise<void>; user_data: { id: string } | null; serverToUserChannel: Channel; bind(e: string, f: (d: unknown) => void): void };
    const tabs = await Promise.all([connect('carol'), connect('carol')]);
    const users = tabs.map((p) => (p as unknown as { user: User }).user);
    const ready = users.map((u) => withTimeout(new Promise<void>((resolve) => {
      const check = (): void => {
        if (u.serverToUserChannel?.subscribed) resolve();
        else setTimeout(check, 20);
      };
      check();
    }), 10_000, 'server-to-user channel subscribed'));
    for (const p of tabs) p.signin();
    await Promise.all(ready);
    assert.deepEqual(users.map((u) => u.user_data?.id), ['carol', 'carol']);
    const got = users.map((u) => withTimeout(new Promise((resolve) => u.bind('Notice', resolve)), 10_000, 'user event'));
    assert.equal((await trigger(['#server-to-user-carol'], 'Notice', { n: 1 })).status, 200);
    assert.deepEqual(await Promise.all(got), [{ n: 1 }, { n: 1 }]);
  });

  it('refuses another user\'s channel and a forged signin', async () => {
    const { c, socketId } = await raw();
    c.ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: '#server-to-user-carol' } }));
    assert.equal((await event(c)).event, 'pusher:subscription_error');
    const userData = JSON.stringify({ id: 'dave' });
    const auth = `${KEY}:${createHmac('sha256', SECRET).update(`${socketId}::user::${userData}`).digest('hex')}`;
    c.ws.send(JSON.stringify({ event: 'pusher:signin', data: { auth, user_data: userData } }));
    assert.deepEqual(await event(c), { event: 'pusher:signin_success', data: { user_data: userData } });
    c.ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: '#server-to-user-carol' } }));
    assert.equal((await event(c)).event, 'pusher:subscription_error', 'signed in as dave, not carol');
    c.ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: '#server-to-user-dave' } }));
    assert.equal((await event(c)).event, 'pusher_internal:subscription_succeeded');
    c.ws.send(JSON.stringify({ event: 'pusher:signin', data: { auth, user_data: JSON.stringify({ id: 'carol' }) } }));
    assert.deepEqual(await event(c), { event: 'pusher:error', data: { code: 4009, message: 'Connection is unauthorized' } });
    assert.equal((await c.closed).code, 4009);
  });
});

describe('one hub with wsfpm', () => {
  it('a wsfpm publish reaches Echo clients, and a Pusher event reaches wsfpm subscribers', async () => {
    const a = await connect();
    const channel = await subscribed(a, 'private-ok.mixed');
    // A bound PHP script subscribed to the same channel, forwarding to its client.
    const script = await open(h.url('/hub-raw.php'));
    script.ws.send('fsub|private-ok.mixed');
    assert.equal(await script.text(), 'ok fsub');
    const control = h.daemon.control!;
    const publish = (data: string) => fetch(`http://${control.address.replace(/^tcp:/, '')}/publish`, {
      method: 'POST',
      headers: { authorization: `Bearer ${control.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel: 'private-ok.mixed', data }),
    });
    const plain = next(channel, 'message');
    await publish('{"hello":"from wsfpm"}');
    assert.deepEqual(await plain, { hello: 'from wsfpm' }, 'plain text: the event "message"');
    assert.equal(await script.text(), '{"hello":"from wsfpm"}');
    const named = next(channel, 'OrderShipped');
    await publish(JSON.stringify({ event: 'OrderShipped', data: '{"id":7}' }));
    assert.deepEqual(await named, { id: 7 }, 'an envelope: its event');
    await script.text();
    // The other way: an HTTP API event, as the bound script's client sees it.
    await trigger(['private-ok.mixed'], 'App\\Events\\Paid', { id: 8 });
    assert.deepEqual(JSON.parse(await script.text()), { event: 'App\\Events\\Paid', data: '{"id":8}' });
    script.ws.close();
  });

  it('an events-mode script reaches Echo clients, and hears Pusher events', async () => {
    const a = await connect();
    const channel = await subscribed(a, 'ev-mixed');
    const script = await open(h.url('/ev-echo.php'));
    assert.equal(await script.text(), 'hello stranger');
    const plain = next(channel, 'message');
    script.ws.send('pub|ev-mixed|from events mode');
    assert.equal(await script.text(), 'ok pub');
    assert.equal(await plain, 'from events mode');
    script.ws.send('fsub|ev-mixed');
    assert.equal(await script.text(), 'ok fsub');
    await trigger(['ev-mixed'], 'Shipped', { id: 9 });
    assert.deepEqual(JSON.parse(await script.text()), { event: 'Shipped', data: '{"id":9}' });
    script.ws.close();
  });
});

describe('frames', () => {
  // Regression: hub deliveries went out as binary frames; pusher-js in Node read them, a browser drops them.
  it('every delivery to a Pusher client is a text frame', async () => {
    const { c, socketId } = await raw();
    c.ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: 'text-only' } }));
    const succeeded = await c.next();
    assert.equal(succeeded.binary, false);
    await trigger(['text-only'], 'ev', 1);
    const delivered = await c.next();
    assert.equal(delivered.binary, false);
    assert.deepEqual(JSON.parse(delivered.data.toString()), { event: 'ev', channel: 'text-only', data: '1' });
    assert.match(socketId, /\./);
    c.ws.close();
  });
});

describe('what a client cannot do to the daemon', () => {
  it('an unknown app key gets pusher:error 4001 and pusher-js does not retry', async () => {
    const p = new Pusher('no-such-key', { cluster: 'mt1', wsHost: '127.0.0.1', wsPort: h.port, forceTLS: false, enabledTransports: ['ws'], disableStats: true } as ConstructorParameters<typeof Pusher>[1]);
    clients.push(p);
    const error = await withTimeout(new Promise<{ error?: { data?: { code?: number } } }>((resolve) => p.connection.bind('error', resolve)), 10_000, 'error event');
    assert.equal(error.error?.data?.code, 4001);
    // 'refused': pusher-js gives up instead of retrying (close code 4001 is in 4000–4099).
    await withTimeout(new Promise<void>((resolve) => (p.connection.state === 'disconnected' ? resolve() : p.connection.bind('disconnected', () => resolve()))), 10_000, 'disconnected');
  });

  it('malformed JSON, unknown events and binary frames get pusher:error 4200; the socket stays', async () => {
    const { c } = await raw();
    for (const bad of ['{not json', '[]', '{"event": 5}', '{"event":"pusher:subscribe","data":{}}', '{"event":"pusher:nothing","data":{}}', '{"event":"hello"}']) {
      c.ws.send(bad);
      assert.deepEqual(await event(c), { event: 'pusher:error', data: { code: 4200, message: 'Invalid message format' } }, bad);
    }
    c.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    assert.equal((await event(c)).event, 'pusher:error');
    c.ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: 'a b' } }));
    assert.equal((await event(c)).event, 'pusher:subscription_error');
    c.ws.send('{"event":"pusher:ping","data":{}}');
    assert.deepEqual(await event(c), { event: 'pusher:pong', data: {} });
    c.ws.close();
  });

  it('a frame over --max-message closes 1009, a missing or unknown protocol version 4008/4007', async () => {
    const { c } = await raw();
    c.ws.send('x'.repeat(1024 * 1024 + 1));
    assert.equal((await c.closed).code, 1009);
    const none = await open(h.url(`/app/${KEY}`));
    assert.deepEqual(await event(none), { event: 'pusher:error', data: { code: 4008, message: 'No protocol version supplied' } });
    assert.equal((await none.closed).code, 4008);
    const future = await open(h.url(`/app/${KEY}?protocol=99`));
    assert.equal((JSON.parse(await future.text()) as { data: { code: number } }).data.code, 4007);
    assert.equal((await future.closed).code, 4007);
    const unknown = await open(h.url('/app/nope?protocol=7'));
    assert.deepEqual(await event(unknown), { event: 'pusher:error', data: { code: 4001, message: 'App key does not exist' } });
    assert.equal((await unknown.closed).code, 4001);
    // Still serving.
    await raw();
  });

  it('a plain GET of /app/KEY is not taken from the site', async () => {
    const res = await fetch(`http://127.0.0.1:${h.port}/app/${KEY}`);
    assert.equal(res.status, 404, 'a page request: the pages handler answered, not the Pusher route');
  });
});

describe('metrics', () => {
  it('counts Pusher connections, events and refusals on the control API\'s /metrics', async () => {
    const { c } = await raw();
    c.ws.send('{not json');
    await event(c);
    await trigger(['metrics-a', 'metrics-b'], 'ev', 1);
    const text = await (await fetch(`http://${h.daemon.control!.address.replace(/^tcp:/, '')}/metrics`)).text();
    const value = (name: string): number => Number(new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
    assert.ok(value('wsfpm_pusher_connections_open') >= 1, text);
    assert.ok(value('wsfpm_pusher_errors_total{code="WSFPM_ERR_PUSHER_BAD_MESSAGE"}') >= 1);
    assert.ok(value('wsfpm_pusher_errors_total{code="WSFPM_ERR_PUSHER_SIGNATURE"}') >= 1, 'the 401s of the earlier tests');
    assert.ok(value('wsfpm_pusher_events_total{source="api"}') >= 2);
    assert.ok(value('wsfpm_pusher_events_total{source="client"}') >= 1);
    c.ws.close();
  });
});

describe('restarts', () => {
  it('pusher-js reconnects and resubscribes when the daemon comes back on its port', async () => {
    const pool = await startPool(4);
    const flags = { root: FIXTURES, port: '0', fpm: `unix:${pool.socket}`, control: '', pages: 'true', pusherApps: APPS, logLevel: 'debug' };
    const logs: Array<Record<string, unknown>> = [];
    let daemon = await createDaemon(buildConfig(flags, {}), logSink(logs));
    await daemon.app.listen({ host: '127.0.0.1', port: 0 });
    const addr = daemon.app.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : 0;
    try {
      const p = await connect('alice', KEY, port);
      const channel = p.subscribe('private-ok.restart');
      await next(channel, 'pusher:subscription_succeeded');
      const firstId = p.connection.socket_id;
      const back = withTimeout(new Promise<void>((resolve) => p.connection.bind('connected', () => resolve())), 30_000, 'reconnected');
      const resubscribed = next(channel, 'pusher:subscription_succeeded', 'resubscribed');
      await daemon.app.close();
      daemon = await createDaemon(buildConfig(flags, {}), logSink(logs));
      await daemon.app.listen({ host: '127.0.0.1', port });
      await back;
      await resubscribed;
      assert.notEqual(p.connection.socket_id, firstId);
      const got = next(channel, 'after');
      const body = JSON.stringify({ name: 'after', data: '"restart"', channel: 'private-ok.restart' });
      const url = signed('POST', `/apps/${APP_ID}/events`, body).replace(`:${h.port}/`, `:${port}/`);
      assert.equal((await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body })).status, 200);
      assert.equal(await got, 'restart');
      p.disconnect();
    } finally {
      await daemon.app.close();
      await pool.stop();
    }
  });
});

describe('Pusher connections and the connection limits', () => {
  it('count against --max-event-connections (they hold no worker), not --max-connections: over it, pusher:error 4004', async () => {
    const small = await startHarness({ pusherApps: APPS, maxConnections: '1', maxEventConnections: '2' }, 2);
    const mine: Pusher[] = [];
    try {
      // Two Pusher connections although --max-connections is 1: that limit is the bound connections'.
      await connectPusher(small.port, 'alice', KEY, mine);
      await connectPusher(small.port, 'bob', KEY, mine);
      const p = new Pusher(KEY, { cluster: 'mt1', wsHost: '127.0.0.1', wsPort: small.port, forceTLS: false, enabledTransports: ['ws'], disableStats: true } as ConstructorParameters<typeof Pusher>[1]);
      mine.push(p);
      const error = await withTimeout(new Promise<{ error?: { data?: { code?: number } } }>((resolve) => p.connection.bind('error', resolve)), 10_000, 'error event');
      assert.equal(error.error?.data?.code, 4004);
    } finally {
      for (const c of mine) c.disconnect();
      await small.close();
    }
  });
});
