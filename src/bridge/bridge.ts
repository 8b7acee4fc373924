/**
 * Pipes one websocket and one PHP endpoint, each direction on its own, so a
 * PHP script busy writing never stops the daemon from reading the client and
 * the reverse.
 *
 * Backpressure: client → PHP, when the FastCGI socket buffer is full the
 * websocket is paused (its TCP window closes, the client slows) until the
 * socket drains. PHP → client, bytes handed to the websocket but not yet
 * flushed are counted; above `highWater` php-fpm's socket is paused (PHP's
 * writes block) until they fall to half of it. A client that leaves them
 * unread for `stallTimeout` is closed (1013): it must not hold a worker
 * forever. Hub deliveries never queue past `highWater` either (1013).
 *
 * Shutdown order:
 *  - client closes or vanishes: PHP gets CLOSE(code) then EOF on STDIN; it has
 *    `closeGrace` to end before its socket is dropped.
 *  - PHP sends CLOSE: the websocket closes with that code once queued
 *    messages are flushed; then as above (PHP gets EOF).
 *  - PHP's request ends: close 1000 (clean end), or 1011 when it ended
 *    abnormally (no END_REQUEST, bad frame, fatal error on STDERR).
 *  - drain (server shutdown): PHP gets CLOSE 1001 then EOF; when its script
 *    ends the client gets 1001, after everything the script sent.
 */
import { isUtf8 } from 'node:buffer';
import type { Socket } from 'node:net';
import type { WebSocket, RawData } from 'ws';
import { FrameType, closePayload, parseClosePayload, FrameError, type Frame } from '../protocol/frames.ts';
import { channelHead } from '../protocol/channel-frames.ts';
import { type Hub, type Member } from '../hub/hub.ts';
import { type Position } from '../hub/history.ts';
import { sendPrepared } from '../hub/prepared-frame.ts';
import { handleHubFrame } from './hub-frames.ts';
import { keepAlive } from './keepalive.ts';
import { TokenBucket } from '../token-bucket.ts';
import { type PhpEndpoint } from './php-endpoint.ts';
import { ERRORS, wsfpmError, type WsfpmError } from '../errors.ts';
import { type Log } from '../log.ts';

export interface BridgeOptions {
  highWater: number;
  pingInterval: number;
  closeGrace: number;
  /** Client messages per second (a one-second burst allowed); over it: close 1008. 0 disables. */
  messageRate: number;
  /** How long the client may leave highWater bytes unread before it is closed (1013). */
  stallTimeout: number;
}

/** Live counters for metrics; the bridge knows nothing of how they are exported. */
export interface BridgeObserver {
  messageIn(bytes: number): void;
  messageOut(bytes: number): void;
  limit(code: string): void;
}

export interface BridgeHandle {
  /** Server shutdown: PHP gets CLOSE 1001 and EOF; the client gets 1001 once PHP has finished sending. */
  drain(): void;
  /** Immediate close (drain grace over). */
  terminate(code: number, reason: string): void;
}

/** Who this connection is, for the hub. */
export interface BridgeIdentity {
  id: string;
  path: string;
  ip: string;
  /** Where the client's history subscriptions resume (`wsfpm_resume`). */
  resume?: Map<string, Position>;
}

export interface BridgeStats {
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
}

const EMPTY = Buffer.alloc(0);

/** Codes a server may put in a close frame (RFC 6455 7.4.1, 7.4.2). */
export function sendableCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

export function truncateReason(reason: string): string {
  const b = Buffer.from(reason, 'utf8');
  if (b.length <= 123) return reason;
  let end = 123;
  while (end > 0 && (b[end]! & 0xc0) === 0x80) end--;
  return b.toString('utf8', 0, end);
}

export function bridge(ws: WebSocket, php: PhpEndpoint, who: BridgeIdentity, hub: Hub, options: BridgeOptions, log: Log, observer: BridgeObserver, onClosed: (code: number, stats: BridgeStats) => void): BridgeHandle {
  const stats: BridgeStats = { messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0 };
  let unflushed = 0;
  let phpPaused = false;
  let phpEnded = false;
  let closeSent = false;
  let wsClosed = false;
  let graceTimer: NodeJS.Timeout | null = null;
  let ticker: NodeJS.Timeout | null = null;
  let waker: NodeJS.Timeout | null = null;
  let draining = false;
  let stallTimer: NodeJS.Timeout | null = null;
  const bucket = options.messageRate > 0 ? new TokenBucket(options.messageRate) : null;
  const started = Date.now();

  const closeClient = (code: number, reason = ''): void => {
    if (closeSent || wsClosed) return;
    closeSent = true;
    ws.close(code, truncateReason(reason));
  };

  const fail = (error: WsfpmError): void => {
    log.warn({ code: error.code, detail: error.detail, close: error.closeCode }, 'connection failed');
    if (!closeSent && !wsClosed) {
      closeSent = true;
      // 1011's cause stays in the log; PHP's errors may hold secrets. The other codes' causes are the client's own.
      const code = error.closeCode === 1006 ? 1011 : error.closeCode;
      ws.close(code, code === 1011 ? 'internal error' : truncateReason(ERRORS[error.code].message));
    }
  };

  /**
   * The websocket is closed with the error's code before PHP's request is
   * dropped: dropping it ends the request, which would otherwise read as a
   * clean end (1000).
   */
  const brokeProtocol = (error: WsfpmError): void => {
    fail(error);
    php.destroy();
  };

  const onSent = (len: number) => (err?: Error | null): void => {
    unflushed -= len;
    if (err) return;
    if (phpPaused && unflushed <= options.highWater / 2) {
      phpPaused = false;
      if (stallTimer) clearTimeout(stallTimer);
      stallTimer = null;
      php.resume();
    }
  };

  // The frames of one php-fpm chunk leave in one writev: ws writes each frame on its own otherwise.
  // ws has no public cork; it keeps its socket as `_socket` (private, but the same in every ws release).
  const socket = (ws as unknown as { _socket?: Socket })._socket;
  let corked = false;
  const corkForTick = (): void => {
    if (corked || !socket) return;
    corked = true;
    socket.cork();
    process.nextTick(() => {
      corked = false;
      socket.uncork();
    });
  };

  const toClient = (frame: Frame): void => {
    if (closeSent || wsClosed) return;
    corkForTick();
    const binary = frame.type === FrameType.Binary;
    if (!binary && !isUtf8(frame.payload)) {
      brokeProtocol(wsfpmError('WSFPM_ERR_PHP_FRAME', 'text frame is not valid UTF-8'));
      return;
    }
    unflushed += frame.payload.length;
    stats.messagesOut++;
    stats.bytesOut += frame.payload.length;
    observer.messageOut(frame.payload.length);
    ws.send(frame.payload, { binary }, onSent(frame.payload.length));
    if (!phpPaused && unflushed > options.highWater) {
      phpPaused = true;
      php.pause();
      // PHP waits for this client; a client that never reads again must not hold a worker forever.
      stallTimer = setTimeout(() => {
        observer.limit('WSFPM_ERR_SLOW_CONSUMER');
        brokeProtocol(wsfpmError('WSFPM_ERR_SLOW_CONSUMER', `the client read nothing of ${unflushed} waiting bytes for ${options.stallTimeout} ms`));
        // The close frame waits behind the unread bytes; a client that reads none of them is cut.
        setTimeout(() => wsClosed || ws.terminate(), options.closeGrace).unref();
      }, options.stallTimeout);
      stallTimer.unref();
    }
  };

  /** A delivery that would grow a queue past highWater closes the connection instead (1013). */
  const overloaded = (toward: string): false => {
    brokeProtocol(wsfpmError('WSFPM_ERR_SLOW_CONSUMER', `more than ${options.highWater} bytes queued toward ${toward}`));
    return false;
  };

  const member: Member = {
    ...who,
    since: started,
    deliverChannel(channel, data, binary, forward, frame) {
      if (forward) return member.deliverDirect(data, binary, frame);
      if (closeSent || wsClosed || phpEnded) return false;
      if (php.inputBacklog > options.highWater) return overloaded('PHP');
      php.sendParts(FrameType.Channel, [channelHead(channel, binary), data]);
      return true;
    },
    deliverDirect(data, binary, frame) {
      if (closeSent || wsClosed) return false;
      if (ws.bufferedAmount > options.highWater) return overloaded('the client');
      stats.messagesOut++;
      stats.bytesOut += data.length;
      observer.messageOut(data.length);
      if (frame) sendPrepared(ws, frame);
      else ws.send(data, { binary });
      return true;
    },
    close: (code, reason) => closeClient(code, reason),
  };
  hub.add(member);

  const setTimer = (ms: number): void => {
    if (ticker) clearInterval(ticker);
    ticker = null;
    if (ms === 0) return;
    // A tick PHP has not read yet is enough: skip while its input is backed up.
    ticker = setInterval(() => {
      if (!phpEnded && !wsClosed && php.inputBacklog === 0) php.send(FrameType.Tick, EMPTY);
    }, ms);
    ticker.unref();
  };

  const wake = (ms: number, seq: Buffer): void => {
    if (waker) clearTimeout(waker);
    waker = setTimeout(() => {
      waker = null;
      if (!phpEnded && !wsClosed) php.send(FrameType.Wake, seq);
    }, ms);
    waker.unref();
  };

  php.attach({
    onFrame(frame) {
      switch (frame.type) {
        case FrameType.Open:
          return;
        case FrameType.Text:
        case FrameType.Binary:
          return toClient(frame);
        case FrameType.Close: {
          let close: { code: number; reason: string };
          try {
            close = parseClosePayload(frame.payload);
          } catch (err) {
            return brokeProtocol(wsfpmError('WSFPM_ERR_PHP_FRAME', (err as FrameError).message));
          }
          if (close.code === 1005) return closeClient(1000);
          if (!sendableCloseCode(close.code)) return brokeProtocol(wsfpmError('WSFPM_ERR_PHP_FRAME', `close code ${close.code} may not be sent`));
          return closeClient(close.code, close.reason);
        }
        default:
          try {
            if (handleHubFrame(frame, { hub, id: who.id, setTimer, wake })) return;
          } catch (err) {
            if (!(err instanceof FrameError)) throw err;
            return brokeProtocol(wsfpmError('WSFPM_ERR_PHP_FRAME', err.message));
          }
          return brokeProtocol(wsfpmError('WSFPM_ERR_PHP_FRAME', `unknown frame type 0x${frame.type.toString(16)}`));
      }
    },
    onEnd(error) {
      phpEnded = true;
      if (ticker) clearInterval(ticker);
      if (waker) clearTimeout(waker);
      if (graceTimer) clearTimeout(graceTimer);
      if (error) return fail(error);
      if (php.sawFatal && !closeSent) return fail(wsfpmError('WSFPM_ERR_PHP_DIED', 'PHP reported a fatal error'));
      if (draining) closeClient(1001, 'server shutting down');
      else closeClient(1000);
    },
    onDrain() {
      if (!wsClosed) ws.resume();
    },
  });

  const pings = keepAlive(ws, options.pingInterval, log);
  ws.on('message', (data: RawData, isBinary: boolean) => {
    pings.seen();
    if (phpEnded || closeSent) return;
    const payload = data as Buffer;
    if (bucket && !bucket.take()) {
      observer.limit('WSFPM_ERR_RATE_LIMIT');
      return brokeProtocol(wsfpmError('WSFPM_ERR_RATE_LIMIT', `over ${options.messageRate} messages per second`));
    }
    stats.messagesIn++;
    stats.bytesIn += payload.length;
    observer.messageIn(payload.length);
    if (!php.send(isBinary ? FrameType.Binary : FrameType.Text, payload)) ws.pause();
  });

  ws.on('close', (code: number, reasonBuf: Buffer) => {
    wsClosed = true;
    if (stallTimer) clearTimeout(stallTimer);
    hub.remove(who.id);
    pings.stop();
    if (ticker) clearInterval(ticker);
    if (waker) clearTimeout(waker);
    if (!phpEnded) {
      php.send(FrameType.Close, closePayload(code, truncateReason(reasonBuf.toString('utf8'))));
      php.endInput();
      graceTimer = setTimeout(() => php.destroy(), options.closeGrace);
      graceTimer.unref();
    }
    onClosed(code, stats);
    log.info({ path: who.path, ip: who.ip, code, durationMs: Date.now() - started, ...stats }, 'websocket closed');
  });

  return {
    drain() {
      if (draining || closeSent || wsClosed || phpEnded) return;
      draining = true;
      php.send(FrameType.Close, closePayload(1001, 'server shutting down'));
      php.endInput();
    },
    terminate(code, reason) {
      closeClient(code, reason);
      php.destroy();
    },
  };
}
