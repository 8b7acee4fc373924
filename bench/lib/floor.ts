/**
 * The floor (issue 11 §1): the bench's own FastCGI client talking straight
 * to php-fpm running bench/www/echo.php through the PHP library, with no
 * websocket and no daemon. It speaks what the daemon speaks to PHP — the
 * same CGI parameters (buildParams), one FcgiRequest per connection, the
 * protocol's frames in STDIN/STDOUT — so what the daemon adds on top of it
 * is the distance between a wsfpm figure and this one.
 *
 * Closing mirrors the daemon's order: CLOSE 1000, then EOF on STDIN; the
 * connection has ended when php-fpm ends the request.
 */
import { EventEmitter } from 'node:events';
import path from 'node:path';
import type { FpmPool } from '../../src/fpm/pool.ts';
import { FcgiRequest } from '../../src/fastcgi/request.ts';
import { FrameDecoder, FrameError, FrameType, closePayload, encodeFrame } from '../../src/protocol/frames.ts';
import { buildParams } from '../../src/server/params.ts';
import { childPids } from './proc.ts';
import { WWW, type EchoTarget } from './systems.ts';
import type { EchoSocket } from './ws.ts';

const MAX_MESSAGE = 64 << 20;
let nextId = 0;

/** One echo.php request seen as a message socket: 'message' (data, isBinary), then one 'close' (code). */
export class FloorSocket extends EventEmitter implements EchoSocket {
  readonly #req: FcgiRequest;
  #closed = false;
  #code = 1006;

  private constructor(pool: FpmPool, onHead: (status: number) => void, onFail: (err: Error) => void) {
    super();
    const decoder = new FrameDecoder(MAX_MESSAGE, (frame) => {
      if (frame.type === FrameType.Text || frame.type === FrameType.Binary) this.emit('message', frame.payload, frame.type === FrameType.Binary);
      else if (frame.type === FrameType.Close) this.#code = frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : 1005;
    });
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
    this.#req = new FcgiRequest({ kind: 'unix', path: pool.socket }, params, {
      onHead: (head) => onHead(head.status),
      onStdout: (chunk) => {
        try {
          decoder.push(chunk);
        } catch (err) {
          if (!(err instanceof FrameError)) throw err;
          this.#req.destroy();
        }
      },
      onStderr: (line) => process.stderr.write(`[floor php] ${line}\n`),
      onEnd: (error) => {
        if (error && !this.#req.head) onFail(error);
        if (this.#closed) return;
        this.#closed = true;
        this.emit('close', error ? 1011 : this.#code === 1006 ? 1000 : this.#code);
      },
    }, { maxHeaderBlock: 64 * 1024 });
  }

  /** A connection PHP has accepted (its 101 header block arrived). */
  static open(pool: FpmPool, timeoutMs = 15_000): Promise<FloorSocket> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        sock.#req.destroy();
        reject(new Error(`floor: no header block from php-fpm within ${timeoutMs} ms`));
      }, timeoutMs);
      const sock: FloorSocket = new FloorSocket(pool, (status) => {
        clearTimeout(timer);
        if (status === 101) resolve(sock);
        else {
          sock.#req.destroy();
          reject(new Error(`floor: echo.php answered ${status}`));
        }
      }, (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  send(data: Buffer, options: { binary: boolean }): void {
    if (this.#closed) return;
    this.#req.writeStdin(encodeFrame(options.binary ? FrameType.Binary : FrameType.Text, data));
  }

  /** CLOSE 1000 and EOF; resolves when the request has ended (destroyed after `timeoutMs`). */
  end(timeoutMs = 5000): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.#req.destroy(), timeoutMs);
      this.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.#req.writeStdin(encodeFrame(FrameType.Close, closePayload(1000, '')));
      this.#req.endStdin();
    });
  }
}

/** The floor as an echo target beside raw ws and wsfpm; its server side is the php-fpm master and workers. */
export function floorTarget(pool: FpmPool): EchoTarget {
  const pids = (): number[] => (pool.pid ? [pool.pid, ...childPids(pool.pid)] : []);
  return {
    name: 'floor',
    side: { label: 'php-fpm master + workers (no daemon)', pids, parts: { 'php-fpm': pids } },
    // Each connection has ended when its request has (end() waits for it): nothing to wait for.
    settle: async () => {},
    openEcho: () => FloorSocket.open(pool),
    closeEcho: (s) => (s as FloorSocket).end(),
  };
}
