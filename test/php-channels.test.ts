/**
 * The PHP library's side of channels, sends, timers and the control API,
 * end to end against the real daemon and php-fpm: Connection::subscribe /
 * publish / sendTo / every, a ChannelHandler under Server::run, and
 * Wsfpm\Client / ControlClient from a php-cli process (a cron job or queue
 * worker in real life).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import path from 'node:path';
import { FIXTURES, open, sleep, startHarness, type Client, type Harness } from './helpers/harness.ts';

const AUTOLOAD = path.resolve(FIXTURES, '..', '..', '..', 'php', 'autoload.php');
const MAX = 4096;

let h: Harness;

before(async () => {
  h = await startHarness({ maxMessage: String(MAX) }, 12);
});
after(async () => h?.close());

interface Member {
  c: Client;
  id: string;
}

async function member(): Promise<Member> {
  const c = await open(h.url('/lib-channels.php'));
  const { id } = JSON.parse(await c.text()) as { id: string };
  return { c, id };
}

/** Sends a command and waits for its "ok" (anything else first is a failure). */
async function command(m: Member, cmd: string): Promise<void> {
  m.c.ws.send(cmd);
  assert.equal(await m.c.text(), `ok ${cmd.split('|')[0]}`);
}

async function json(m: Member): Promise<Record<string, unknown>> {
  return JSON.parse(await m.c.text()) as Record<string, unknown>;
}

/** Runs PHP code in a php-cli process with the daemon's control address and token in its environment; returns what it printed. */
function php(code: string, env: Record<string, string> = {}): Promise<string> {
  const control = h.daemon.control!;
  return new Promise((resolve, reject) => {
    execFile('php', ['-n', '-d', 'display_errors=stderr', '-r', `require ${JSON.stringify(AUTOLOAD)}; ${code}`], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', WSFPM_CONTROL: control.address, WSFPM_CONTROL_TOKEN: control.token, ...env },
      timeout: 10_000,
    }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)));
  });
}

async function close(...members: Member[]): Promise<void> {
  for (const m of members) m.c.ws.close();
  await Promise.all(members.map((m) => m.c.closed));
}

describe('Connection channel API', () => {
  it('delivers channel messages to PHP through receive(), with the channel name', async () => {
    const a = await member();
    const b = await member();
    await command(a, 'sub|room/1');
    await command(b, 'pub|room/1|hello from b');
    assert.deepEqual(await json(a), { channel: 'room/1', data: 'hello from b', binary: false, length: 12 });
    await command(b, 'pubbin|room/1|00ff10');
    assert.deepEqual(await json(a), { channel: 'room/1', data: '00ff10', binary: true, length: 3 });
    await command(a, 'unsub|room/1');
    await command(b, 'pub|room/1|after unsubscribe');
    // Nothing arrives for a: the next thing it sees is its own command's answer.
    await command(a, 'every|0');
    await close(a, b);
  });

  it('forwards to the client directly with FORWARD, and excludeSelf leaves the publisher out', async () => {
    const a = await member();
    const b = await member();
    await command(a, 'fsub|news:today');
    await command(b, 'fsub|news:today');
    await command(a, 'pubx|news:today|not for me');
    assert.equal(await b.c.text(), 'not for me');
    // The forwarded copy may reach a's client before the script's "ok": both arrive, in either order.
    a.c.ws.send('pub|news:today|for all');
    assert.deepEqual([await a.c.text(), await a.c.text()].sort(), ['for all', 'ok pub']);
    assert.equal(await b.c.text(), 'for all');
    await close(a, b);
  });

  it('sendTo reaches another connection\'s client', async () => {
    const a = await member();
    const b = await member();
    await command(a, `send|${b.id}|psst`);
    assert.equal(await b.c.text(), 'psst');
    await close(a, b);
  });

  it('ticks while a timer runs, and stops with every(0)', async () => {
    const a = await member();
    await command(a, 'every|25');
    assert.deepEqual(await json(a), { tick: 1 });
    assert.deepEqual(await json(a), { tick: 2 });
    assert.deepEqual(await json(a), { tick: 3 });
    a.c.ws.send('every|0');
    // Ticks already sent before the stop may come first; after "ok every" none may follow,
    // since the library drops ticks still in flight once every(0) was called.
    for (let m = await a.c.text(); m !== 'ok every'; m = await a.c.text()) assert.match(m, /^\{"tick":\d+\}$/);
    await sleep(200);
    assert.deepEqual(a.c.messages.map((m) => m.data.toString()), [], 'no ticks after every(0)');
    a.c.ws.send('every|5');
    assert.match(await a.c.text(), /^error a timer interval is 0 \(stop\) or 10\.\./);
    await close(a);
  });

  it('a ChannelHandler gets onChannel and onTimer from Server::run', async () => {
    const c = await open(h.url('/lib-handler.php'));
    assert.equal(await c.text(), 'open');
    assert.equal(await c.text(), 'three ticks');
    const reached = await php(`echo Wsfpm\\Client::publish('lobby', 'from cron');`);
    assert.equal(reached, '1');
    assert.equal(await c.text(), 'channel lobby from cron');
    c.ws.send('hi');
    assert.equal(await c.text(), 'message hi');
    c.ws.close();
    await c.closed;
  });

  it('a channel message as large as --max-message reaches PHP (the frame is larger by the channel name)', async () => {
    const a = await member();
    const channel = 'c'.repeat(128);
    await command(a, `sub|${channel}`);
    const out = await php(`echo Wsfpm\\Client::publish('${channel}', str_repeat('x', ${MAX}));`);
    assert.equal(out, '1');
    const got = await json(a);
    assert.equal(got.length, MAX);
    // Connection::publish itself counts the channel name against the frame limit.
    a.c.ws.send(`pubn|${channel}|${MAX - 2 - 128 + 1}`);
    assert.match(await a.c.text(), /^error cannot send a 4097-byte frame: the limit is 4096/);
    await command(a, `pubn|${channel}|${MAX - 2 - 128}`);
    assert.equal((await json(a)).length, MAX - 2 - 128, 'the largest PUBLISH the daemon accepts');
    await close(a);
  });
});

describe('Wsfpm\\Client from a php-cli process', () => {
  it('publishes, sends, lists members and connections, and closes', async () => {
    const a = await member();
    const b = await member();
    await command(a, 'fsub|team/ops@example');
    await command(b, 'sub|team/ops@example');
    const out = JSON.parse(await php(`
      $r = [];
      $r['publish'] = Wsfpm\\Client::publish('team/ops@example', 'deploy done');
      $r['exclude'] = Wsfpm\\Client::publish('team/ops@example', "\\x00\\x01", true, '${a.id}');
      $r['send'] = Wsfpm\\Client::send('${a.id}', 'just you');
      $r['members'] = Wsfpm\\Client::members('team/ops@example');
      sort($r['members']);
      $r['connections'] = array_map(fn ($c) => [$c['id'], $c['path'], $c['channels']], Wsfpm\\Client::connections());
      $r['empty'] = Wsfpm\\Client::members('nobody/here');
      echo json_encode($r);
    `)) as Record<string, unknown>;
    assert.equal(out.publish, 2);
    assert.equal(out.exclude, 1);
    assert.equal(out.send, 1);
    assert.deepEqual(out.members, [a.id, b.id].sort(), 'a channel name with "/" and "@" works in GET /channels/NAME');
    assert.deepEqual(out.empty, []);
    const conns = out.connections as Array<[string, string, string[]]>;
    assert.deepEqual(conns.find((c) => c[0] === a.id), [a.id, '/lib-channels.php', ['team/ops@example']]);
    assert.equal(await a.c.text(), 'deploy done');
    assert.equal(await a.c.text(), 'just you');
    assert.deepEqual(await json(b), { channel: 'team/ops@example', data: 'deploy done', binary: false, length: 11 });
    assert.deepEqual(await json(b), { channel: 'team/ops@example', data: '0001', binary: true, length: 2 });

    assert.equal(await php(`echo (new Wsfpm\\ControlClient())->close('${b.id}', 4001, 'maintenance');`), '1');
    assert.deepEqual(await b.c.closed, { code: 4001, reason: 'maintenance' });
    a.c.ws.close();
    await a.c.closed;
    assert.equal(await php(`echo Wsfpm\\Client::send('${a.id}', 'gone');`), '0');
    assert.equal(await php(`var_export(Wsfpm\\Client::instance()->healthy());`), 'true');
  });

  it('fails with clear exceptions: wrong token, nothing listening, bad channel', async () => {
    const catchIt = (call: string) => `try { ${call}; echo 'no exception'; } catch (Wsfpm\\Exception $e) { echo get_class($e), ' ', $e instanceof Wsfpm\\ControlException ? $e->status : '-', ' ', $e->getMessage(); }`;
    assert.match(await php(catchIt(`Wsfpm\\Client::publish('a', 'b')`), { WSFPM_CONTROL_TOKEN: 'not-the-token-at-all' }), /^Wsfpm\\ControlException 401 .*refused the token/);
    assert.match(await php(catchIt(`Wsfpm\\Client::to('tcp:127.0.0.1:1', 'x')->publish('a', 'b')`)), /^Wsfpm\\ControlException 0 cannot reach the wsfpm control API at tcp:127\.0\.0\.1:1/);
    assert.match(await php(catchIt(`Wsfpm\\Client::publish('no spaces', 'b')`)), /^Wsfpm\\Exception - invalid channel name/);
    assert.match(await php(catchIt(`Wsfpm\\Client::publish('a', 'b')`), { WSFPM_CONTROL_TOKEN: '' }), /^Wsfpm\\ControlException 0 no control token/);
  });
});
