/**
 * The PHP library's events mode under real php-fpm, without the daemon:
 * each event is one FastCGI request made here with the parameters and body
 * docs/protocol.md ("Events mode") gives it, and the test reads what PHP
 * answered, byte for byte: the 101 and the OPEN frame of an open event, the
 * action frames of a message event, the 500 with nothing applied after a
 * fatal error. php-cli cannot show these (it has no headers and no request
 * body), and the daemon's own end-to-end tests look at the websocket, not
 * at these bytes. The scripts are the ev-*.php fixtures the daemon's tests use.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fcgiFetch, type FetchResult } from '../src/fastcgi/fetch.ts';
import { type FpmPool } from '../src/fpm/pool.ts';
import { FIXTURES, startPool } from './helpers/harness.ts';

const ID = '0123456789abcdef0123456789abcdef';

/** A frame as docs/protocol.md draws it: type(1) length(4, BE) payload. */
function frame(type: number, payload: string | Buffer = ''): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const head = Buffer.alloc(5);
  head.writeUInt8(type, 0);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}
const TEXT = 0x01, BINARY = 0x02, CLOSE = 0x08, SUBSCRIBE = 0x10, PUBLISH = 0x12, CHANNEL = 0x14, META = 0x30;
const OPEN = (batch: number) => frame(0x00, Buffer.from([0x01, batch >> 8, batch & 0xff]));
const text = (s: string) => frame(TEXT, s);
const close = (code: number, reason = '') => frame(CLOSE, Buffer.concat([Buffer.from([code >> 8, code & 0xff]), Buffer.from(reason)]));

let pool: FpmPool;
before(async () => {
  pool = await startPool(2);
});
after(async () => pool?.stop());

interface Request {
  script: string;
  query?: string;
  event: 'open' | 'message' | 'close';
  body?: Buffer;
  meta?: string;
  cookie?: string;
}

/** One event request, with the parameters the daemon sends (docs/protocol.md, "Event requests"). */
function event(r: Request): Promise<FetchResult> {
  const file = path.join(FIXTURES, r.script);
  const params: Record<string, string> = {
    GATEWAY_INTERFACE: 'CGI/1.1',
    REQUEST_METHOD: 'GET',
    SCRIPT_FILENAME: file,
    SCRIPT_NAME: `/${r.script}`,
    REQUEST_URI: `/${r.script}${r.query ? `?${r.query}` : ''}`,
    QUERY_STRING: r.query ?? '',
    DOCUMENT_ROOT: FIXTURES,
    REMOTE_ADDR: '127.0.0.1',
    SERVER_PROTOCOL: 'HTTP/1.1',
    WSFPM_PROTOCOL: '1',
    WSFPM_EVENT: r.event,
    WSFPM_CONNECTION_ID: ID,
    WSFPM_MAX_MESSAGE: '4096',
    WSFPM_MAX_META: '4096',
  };
  if (r.meta !== undefined) params.WSFPM_META = r.meta;
  if (r.cookie) params.HTTP_COOKIE = r.cookie;
  return fcgiFetch({ kind: 'unix', path: pool.socket }, params, r.body ?? Buffer.alloc(0));
}

/** A session of session-page.php's with $_SESSION['name'] = name; returns the Cookie header for it. */
async function login(name: string): Promise<string> {
  const r = await fcgiFetch({ kind: 'unix', path: pool.socket }, {
    REQUEST_METHOD: 'GET',
    SCRIPT_FILENAME: path.join(FIXTURES, 'session-page.php'),
    QUERY_STRING: `name=${name}`,
    REQUEST_URI: `/session-page.php?name=${name}`,
  });
  return `PHPSESSID=${r.body.toString()}`;
}

const header = (r: FetchResult, name: string) => r.head.headers.filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, v]) => v);

describe('events mode under php-fpm', { timeout: 60_000 }, () => {
  it('open: 101 with the script\'s headers, then OPEN(events, batch) and the actions, META last', async () => {
    const r = await event({ script: 'ev-echo.php', query: 'batch=4', event: 'open' });
    assert.equal(r.head.status, 101, r.stderr.join('\n'));
    assert.deepEqual(header(r, 'X-Ev'), ['open']);
    assert.deepEqual(r.body, Buffer.concat([OPEN(4), text('hello stranger'), frame(META, '{"n":0}')]));
    assert.deepEqual(r.stderr, []);
  });

  it('message: the session is read in the event, meta counts on, the batch is answered in order', async () => {
    const cookie = await login('Ann');
    const r = await event({ script: 'ev-echo.php', event: 'message', meta: '{"n":4}', cookie, body: Buffer.concat([text('session'), text('hi'), frame(BINARY, Buffer.from([0, 255]))]) });
    assert.equal(r.head.status, 200, r.stderr.join('\n'));
    assert.deepEqual(r.body, Buffer.concat([text('session Ann'), text('#6 hi'), frame(BINARY, Buffer.from([0, 255])), frame(META, '{"n":7}')]));
  });

  it('message: a channel message comes with its channel; subscribe and publish are actions', async () => {
    const channel = Buffer.concat([Buffer.from([0x00, 4]), Buffer.from('news'), Buffer.from('extra!')]);
    const r = await event({ script: 'ev-echo.php', event: 'message', meta: '{"n":0}', body: Buffer.concat([frame(CHANNEL, channel), text('fsub|room:1'), text('pub|room:1|hey')]) });
    assert.deepEqual(r.body, Buffer.concat([
      text('channel news extra!'),
      frame(SUBSCRIBE, Buffer.concat([Buffer.from([0x01]), Buffer.from('room:1')])), text('ok fsub'),
      frame(PUBLISH, Buffer.concat([Buffer.from([0x00, 6]), Buffer.from('room:1hey')])), text('ok pub'),
      frame(META, '{"n":2}'),
    ]));
  });

  it('message: close() goes last, after the META', async () => {
    const r = await event({ script: 'ev-echo.php', event: 'message', meta: '{"n":1}', body: text('close|4000|done') });
    assert.deepEqual(r.body, Buffer.concat([frame(META, '{"n":2}'), close(4000, 'done')]));
  });

  it('close: the code reaches the script; it publishes to the others', async () => {
    const r = await event({ script: 'ev-echo.php', event: 'close', meta: '{"n":9}', body: close(1001, 'going away') });
    assert.equal(r.head.status, 200);
    const json = JSON.stringify({ id: ID, code: 1001, reason: 'going away', n: 9 });
    assert.deepEqual(r.body, frame(PUBLISH, Buffer.concat([Buffer.from([0x00, 9]), Buffer.from('ev:closed' + json)])));
  });

  it('a fatal error or an uncaught exception: status 500, no byte of the actions, PHP\'s line on STDERR', async () => {
    for (const [data, logged] of [['fatal', /PHP Fatal error: +Uncaught Error: Call to undefined function wsfpm_no_such_function/], ['throw', /PHP Fatal error: +Uncaught RuntimeException: boom secret/]] as const) {
      const r = await event({ script: 'ev-fatal.php', event: 'message', body: text(data) });
      assert.equal(r.head.status, 500, data);
      assert.equal(r.body.length, 0, `${data}: ${r.body.toString()}`);
      assert.match(r.stderr.join('\n'), logged);
    }
    const ok = await event({ script: 'ev-fatal.php', event: 'message', body: text('fine') });
    assert.equal(ok.head.status, 200);
    assert.deepEqual(ok.body, text('fine'));
  });

  it('open without a session: the refusal with its status, body and headers; with one: accepted and subscribed', async () => {
    const refused = await event({ script: 'ev-auth.php', event: 'open' });
    assert.equal(refused.head.status, 401);
    assert.equal(refused.body.toString(), 'log in first');
    assert.deepEqual(header(refused, 'X-Reason'), ['no session']);

    const cookie = await login('Bob');
    const r = await event({ script: 'ev-auth.php', event: 'open', cookie });
    assert.equal(r.head.status, 101, r.stderr.join('\n'));
    assert.deepEqual(r.body, Buffer.concat([OPEN(1), frame(SUBSCRIBE, Buffer.concat([Buffer.from([0x01]), Buffer.from('user:Bob')])), frame(META, '{"name":"Bob"}')]));
    const m = await event({ script: 'ev-auth.php', event: 'message', cookie, meta: '{"name":"Bob"}', body: text('hi') });
    assert.deepEqual(m.body, text('Bob: hi'));
  });

  it('ev-slow.php answers after the sleep it is asked for (the daemon\'s timeout tests use it)', async () => {
    const r = await event({ script: 'ev-slow.php', event: 'message', body: Buffer.concat([text('sleep|0.05')]) });
    assert.deepEqual(r.body, text('slept 0.05'));
  });

  it('a script that prints past the library: the bytes are not frames, and the library logs that it could not answer', async () => {
    const r = await event({ script: 'ev-garbage.php', event: 'message', body: text('x') });
    assert.ok(r.body.toString().startsWith('this is not a frame'), r.body.toString());
    assert.match(r.stderr.join('\n'), /output started at .*ev-garbage\.php/);
  });
});
