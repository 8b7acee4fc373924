/**
 * The floor (issue 11 §1): the bench's own FastCGI client talking straight
 * to php-fpm running bench/www/echo.php through the PHP library, with no
 * websocket and no daemon. It speaks what the daemon speaks to PHP — the
 * same CGI parameters (buildParams), one PhpEndpoint per connection (the
 * daemon's own PHP end), the protocol's frames on the side channel or in
 * STDIN/STDOUT as `--side-channel` says — so what the daemon adds on top of
 * it is the distance between a wsfpm figure and this one.
 *
 * Closing mirrors the daemon's order: CLOSE 1000, then EOF on STDIN; the
 * connection has ended when php-fpm ends the request.
 */
import { EventEmitter } from 'node:events';
import path from 'node:path';
import type { FpmPool } from '../../src/fpm/pool.ts';
import { PhpEndpoint } from '../../src/bridge/php-endpoint.ts';
import { openSideChannel, type SideChannelListener } from '../../src/bridge/side-channel.ts';
import { FrameType, closePayload } from '../../src/protocol/frames.ts';
import { buildParams } from '../../src/server/params.ts';
import { silentLog } from '../../src/log.ts';
import { childPids } from './proc.ts';
import { WWW, type EchoTarget } from './systems.ts';
import type { EchoSocket } from './ws.ts';

const MAX_MESSAGE = 64 << 20;
let nextId = 0;

/** One echo.php request seen as a message socket: 'message' (data, isBinary), then one 'close' (code). */
export class FloorSocket extends EventEmitter implements EchoSocket {
  readonly #php: PhpEndpoint;
  #closed = false;
  #code = 1006;

  private constructor(php: PhpEndpoint) {
    super();
    this.#php = php;
  }

  /** A connection PHP has accepted: its 101 and its OPEN frame have arrived. */
  static async open(pool: FpmPool, channel: SideChannelListener | null, timeoutMs = 15_000): Promise<FloorSocket> {
    const script = path.join(WWW, 'echo.php');
    const params = buildParams({
      method: 'GET',
      url: '/echo.php',
      rawHeaders: ['Host', '127.0.0.1', 'Upgrade', 'websocket', 'Connection', 'Upgrade', 'Sec-WebSocket-Version', '13'],
      remoteAddress: '127.0.0.1',
      remotePort: 0,
      localAddress: '127.0.0.1',
      localPort: 0,
      https: false,
      host: '127.0.0.1',
      connectionId: `floor-${++nextId}`,
      maxMessage: MAX_MESSAGE,
      extra: { WSFPM_EVENT: 'open' },
    }, { documentRoot: WWW, filename: script, scriptName: '/echo.php', pathInfo: '' });
    const offer = channel?.offer();
    if (offer) params.push(...offer.params as Array<[string, string]>);
    const php = new PhpEndpoint({ kind: 'unix', path: pool.socket }, params, { maxMessage: MAX_MESSAGE, maxHeaderBlock: 64 * 1024, channel: offer }, silentLog);
    try {
      const head = await php.waitHead(timeoutMs, 1000);
      if (head.status !== 101) throw new Error(`floor: echo.php answered ${head.status}`);
      const mode = await php.openMode(timeoutMs);
      if (mode.mode !== 'bound') throw new Error(`floor: echo.php chose ${mode.mode} mode`);
    } catch (err) {
      php.destroy();
      throw err;
    }
    const sock = new FloorSocket(php);
    php.attach({
      onFrame: (frame) => {
        if (frame.type === FrameType.Text || frame.type === FrameType.Binary) sock.emit('message', frame.payload, frame.type === FrameType.Binary);
        else if (frame.type === FrameType.Close) sock.#code = frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : 1005;
      },
      onEnd: (error) => {
        if (sock.#closed) return;
        sock.#closed = true;
        sock.emit('close', error ? 1011 : sock.#code === 1006 ? 1000 : sock.#code);
      },
      onDrain: () => {},
    });
    return sock;
  }

  /** Whether this connection's frames go over the side channel. */
  get onChannel(): boolean {
    return this.#php.onChannel;
  }

  send(data: Buffer, options: { binary: boolean }): void {
    if (this.#closed) return;
    this.#php.send(options.binary ? FrameType.Binary : FrameType.Text, data);
  }

  /** CLOSE 1000 and EOF, in the daemon's order; resolves when the request has ended (destroyed after `timeoutMs`). */
  end(timeoutMs = 5000): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.#php.destroy(), timeoutMs);
      this.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.#php.send(FrameType.Close, closePayload(1000, ''));
      this.#php.endInput();
    });
  }
}

/**
 * The floor as an echo target beside raw ws and wsfpm; its server side is
 * the php-fpm master and workers. With `sideChannel` auto it offers each
 * request a side channel of its own listener, as the daemon does.
 */
export async function floorTarget(pool: FpmPool, sideChannel: 'auto' | 'off'): Promise<EchoTarget & { close(): Promise<void> }> {
  const pids = (): number[] => (pool.pid ? [pool.pid, ...childPids(pool.pid)] : []);
  const channel = sideChannel === 'auto' ? await openSideChannel({ dir: '', group: '', fallbackGroup: '', fpmSocket: pool.socket }, silentLog) : null;
  return {
    name: 'floor',
    side: { label: `php-fpm master + workers (no daemon; frames on ${channel ? 'the side channel' : 'STDIN/STDOUT'})`, pids, parts: { 'php-fpm': pids } },
    // Each connection has ended when its request has (end() waits for it): nothing to wait for.
    settle: async () => {},
    openEcho: () => FloorSocket.open(pool, channel),
    closeEcho: (s) => (s as FloorSocket).end(),
    close: async () => channel?.close(),
  };
}
