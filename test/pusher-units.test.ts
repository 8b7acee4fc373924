/** The Pusher face's pure parts: app settings, signatures and the hub mapping. */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { buildConfig } from '../src/config.ts';
import { ConfigError } from '../src/errors.ts';
import { parsePusherApps } from '../src/pusher/apps.ts';
import { channelAuth, checkRequestSignature, requestStringToSign, validChannelAuth } from '../src/pusher/signatures.ts';
import { hubEnvelope, parseClientMessage, pusherFrame } from '../src/pusher/messages.ts';

const SECRET = 'test-secret-0123456789';

describe('--pusher-apps', () => {
  it('parses apps with and without client events', () => {
    assert.deepEqual(parsePusherApps(`1:k1:${SECRET}, 2:k2:${SECRET}:client-events ,3:k3:${SECRET}:client-events=25:webhook=/hooks/pusher.php`), [
      { id: '1', key: 'k1', secret: SECRET, clientEventRate: 0, webhook: '' },
      { id: '2', key: 'k2', secret: SECRET, clientEventRate: 10, webhook: '' },
      { id: '3', key: 'k3', secret: SECRET, clientEventRate: 25, webhook: '/hooks/pusher.php' },
    ]);
    assert.deepEqual(parsePusherApps(''), []);
  });

  it('refuses bad values naming the flag and variable, without echoing the secret', () => {
    for (const [raw, why] of [
      ['1:k1', /secret must be 16/],
      ['1:k1:short', /secret must be 16/],
      [`1 x:k1:${SECRET}`, /expected ID:KEY:SECRET/],
      [`1:k1:${SECRET}:client-event`, /unknown option/],
      [`1:k1:${SECRET}:client-events=0`, /at least 1/],
      [`1:k1:${SECRET}:webhook=hooks.php`, /unknown option/],
      [`1:k1:${SECRET}:webhook=/../etc/x.php`, /unknown option/],
      [`1:k1:${SECRET}:webhook=/hook.txt`, /unknown option/],
      [`1:k1:${SECRET},1:k2:${SECRET}`, /id 1 is given twice/],
      [`1:k1:${SECRET},2:k1:${SECRET}`, /key k1 is given twice/],
    ] as const) {
      assert.throws(() => buildConfig({}, { WSFPM_PUSHER_APPS: raw }), (err: Error) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, /--pusher-apps \/ WSFPM_PUSHER_APPS/);
        assert.match(err.message, why);
        assert.ok(!err.message.includes(SECRET), err.message);
        return true;
      }, raw);
    }
  });
});

describe('signatures', () => {
  const app = parsePusherApps(`1:key:${SECRET}`)[0]!;

  it('channel auth is KEY:hmac(socket_id:channel[:channel_data])', () => {
    const hmac = (s: string) => createHmac('sha256', SECRET).update(s).digest('hex');
    assert.equal(channelAuth(app, '1.2', 'private-a'), `key:${hmac('1.2:private-a')}`);
    assert.equal(channelAuth(app, '1.2', 'presence-a', '{"user_id":"1"}'), `key:${hmac('1.2:presence-a:{"user_id":"1"}')}`);
    assert.ok(validChannelAuth(app, '1.2', 'private-a', `key:${hmac('1.2:private-a')}`));
    assert.ok(!validChannelAuth(app, '1.2', 'private-a', `key:${hmac('1.3:private-a')}`));
    assert.ok(!validChannelAuth(app, '1.2', 'private-a', `key:${hmac('1.2:private-a')}0`));
    assert.ok(!validChannelAuth(app, '1.2', 'private-a', 42));
  });

  it('the request signature matches Pusher\'s worked example', () => {
    // The example of Pusher's HTTP API reference ("Worked authentication example"): key 278d425bdf160c739803, secret 7ad3773142a6692b25b8.
    const example = parsePusherApps('3:278d425bdf160c739803:7ad3773142a6692b25b8')[0]!;
    const body = Buffer.from('{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}');
    const params = new Map([['auth_key', '278d425bdf160c739803'], ['auth_timestamp', '1353088179'], ['auth_version', '1.0'], ['body_md5', 'ec365a775a4cd0599faeb73354201b6f']]);
    assert.equal(requestStringToSign('POST', '/apps/3/events', params), 'POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f');
    params.set('auth_signature', 'da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c');
    assert.equal(checkRequestSignature(example, 'POST', '/apps/3/events', params, body, 1353088179_000), null);
    assert.match(checkRequestSignature(example, 'POST', '/apps/3/events', params, body, (1353088179 + 601) * 1000) ?? '', /auth_timestamp/);
    assert.match(checkRequestSignature(example, 'POST', '/apps/3/events', params, Buffer.from(body.toString() + ' '), 1353088179_000) ?? '', /body_md5/);
    assert.match(checkRequestSignature(example, 'POST', '/apps/4/events', params, body, 1353088179_000) ?? '', /auth_signature/);
  });
});

describe('messages', () => {
  it('parses what clients send and names what it cannot', () => {
    assert.deepEqual(parseClientMessage('{"event":"pusher:subscribe","data":{"channel":"a","auth":"x"}}'), { kind: 'subscribe', channel: 'a', auth: 'x', channelData: undefined });
    assert.deepEqual(parseClientMessage('{"event":"pusher:subscribe","data":"{\\"channel\\":\\"a\\"}"}'), { kind: 'subscribe', channel: 'a', auth: undefined, channelData: undefined });
    assert.deepEqual(parseClientMessage('{"event":"client-x","channel":"private-a","data":{"n":1}}'), { kind: 'client-event', event: 'client-x', channel: 'private-a', data: { n: 1 } });
    for (const bad of ['', 'null', '"x"', '{"event":1}', '{"event":"pusher:subscribe"}', '{"event":"client-x"}', '{"event":"other"}']) assert.equal(parseClientMessage(bad).kind, 'bad', bad);
  });

  it('maps hub messages onto Pusher events: envelopes by their event, other text as "message", binary not at all', () => {
    assert.equal(pusherFrame('c', hubEnvelope('E', '{"a":1}'), false), '{"event":"E","channel":"c","data":"{\\"a\\":1}"}');
    assert.equal(pusherFrame('c', hubEnvelope('client-x', { a: 1 }, 'u1'), false), '{"event":"client-x","channel":"c","data":{"a":1},"user_id":"u1"}');
    assert.equal(pusherFrame('c', Buffer.from('hello'), false), '{"event":"message","channel":"c","data":"hello"}');
    assert.equal(pusherFrame('c', Buffer.from('{"type":"join"}'), false), '{"event":"message","channel":"c","data":"{\\"type\\":\\"join\\"}"}');
    assert.equal(pusherFrame('c', Buffer.from([1, 2]), true), null);
  });
});
