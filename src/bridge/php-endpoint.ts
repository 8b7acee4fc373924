/**
 * The PHP end of a binding: one FastCGI request seen as a message endpoint.
 *
 * Life: open → header block (accept or refuse) → frames both ways → end.
 * Until the websocket side attaches, PHP's output is held (PHP may send
 * messages right after accepting, before the 101 is even written).
 *
 * With a side channel (side-channel.ts) claimed before the header block,
 * frames flow over it both ways and the FastCGI request carries only the
 * lifecycle (head, OPEN, STDERR, end). The request's end is reported only
 * once the channel is closed too, so a frame PHP wrote just before ending
 * is never overtaken by the end.
 */
import type { Socket } from 'node:net';
import { type FpmAddress } from '../fastcgi/address.ts';
import { type CgiHead } from '../fastcgi/cgi-headers.ts';
import { FcgiRequest } from '../fastcgi/request.ts';
import { FRAME_HEADER_LEN, FrameDecoder, FrameError, FrameType, encodeFrame, frameHeader, type Frame } from '../protocol/frames.ts';
import { parseOpenPayload, type OpenMode } from '../protocol/event-frames.ts';
import { wsfpmError, type WsfpmError } from '../errors.ts';
import { type Log } from '../log.ts';
import { type ChannelOffer } from './side-channel.ts';

export interface PhpSink {
  onFrame(frame: Frame): void;
  /** The request ended; `error` null means a clean END_REQUEST. */
  onEnd(error: WsfpmError | null): void;
  /** PHP accepts input again after send() returned false. */
  onDrain(): void;
}

export interface PhpEndpointOptions {
  maxMessage: number;
  maxHeaderBlock: number;
  /** The side channel offered in `params`, if any. */
  channel?: ChannelOffer;
}

/** After the request ended, how long a channel that PHP has not closed may still deliver, ms (a live worker closes it first). */
const CHANNEL_LINGER_MS = 1000;

const FATAL = /PHP (?:Fatal|Parse) error/;

export class PhpEndpoint {
  readonly #req: FcgiRequest;
  readonly #log: Log;
  readonly #decoder: FrameDecoder;
  readonly #offer: ChannelOffer | undefined;
  #channel: Socket | null = null;
  #channelDecoder: FrameDecoder | null = null;
  #channelHeld: Buffer[] = [];
  #channelOpen = false;
  #lingerTimer: NodeJS.Timeout | null = null;
  readonly head: Promise<CgiHead>;
  #held: Buffer[] = [];
  #heldBytes = 0;
  /** Output held before attach beyond this pauses PHP (or, for a refusal body, ends it). */
  #holdLimit: number;
  #sink: PhpSink | null = null;
  #endError: WsfpmError | null | undefined = undefined;
  #bodyWaiter: ((error: WsfpmError | null) => void) | null = null;
  /** Woken by output (or the end) that arrives while nothing is attached: openMode() waits on it. */
  #heldWaiter: (() => void) | null = null;
  /** PHP reported a fatal error on STDERR: an end without CLOSE is then a crash, not a goodbye. */
  sawFatal = false;

  constructor(address: FpmAddress, params: Iterable<readonly [string, string]>, options: PhpEndpointOptions, log: Log) {
    this.#log = log;
    this.#holdLimit = options.maxMessage + 64 * 1024;
    this.#decoder = new FrameDecoder(options.maxMessage, (frame) => this.#sink?.onFrame(frame));
    this.#offer = options.channel;
    this.#offer?.onClaim((socket) => this.#claimed(socket, options.maxMessage));
    let resolveHead!: (head: CgiHead) => void;
    let rejectHead!: (error: WsfpmError) => void;
    this.head = new Promise((resolve, reject) => {
      resolveHead = resolve;
      rejectHead = reject;
    });
    // A head that is never awaited (client gone) must not become an unhandled rejection.
    this.head.catch(() => {});
    this.#req = new FcgiRequest(address, params, {
      onHead: (head) => resolveHead(head),
      onStdout: (chunk) => this.#onStdout(chunk),
      onStderr: (line) => {
        if (FATAL.test(line)) this.sawFatal = true;
        this.#log.warn({ stderr: line }, 'PHP wrote to stderr');
      },
      onEnd: (error) => {
        this.#endError = error;
        if (!this.#req.head) rejectHead(error ?? wsfpmError('WSFPM_ERR_PHP_ENDED'));
        this.#bodyWaiter?.(error);
        this.#heldWaiter?.();
        this.#finish();
      },
      onDrain: () => this.#sink?.onDrain(),
    }, { maxHeaderBlock: options.maxHeaderBlock });
  }

  /**
   * PHP's answer to the upgrade, waited for at most `timeoutMs`. php-fpm holds
   * a finished script's output until STDIN ends, so a page that does not use
   * the helper library (no accept()/reject()) would look like a saturated
   * pool: on timeout, STDIN is ended and PHP gets `probeMs` more. A refusal
   * that then arrives is PHP's real answer; silence, or an accept that came
   * only after its input was closed, is a 503.
   */
  async waitHead(timeoutMs: number, probeMs: number): Promise<CgiHead> {
    const first = await within(this.head, timeoutMs);
    if (first) return first;
    this.endInput();
    const late = await within(this.head, probeMs);
    if (late && late.status !== 101) return late;
    throw wsfpmError('WSFPM_ERR_FPM_BUSY', late ? 'PHP accepted only after the handshake timeout' : `no header block within ${timeoutMs} ms`);
  }

  /**
   * The mode PHP chose in its OPEN frame (docs/protocol.md, "Events mode"),
   * read from the output held before attach without consuming it. Bound
   * when the first frame is not OPEN (the bridge then judges it) or when
   * nothing comes within `timeoutMs`; throws WSFPM_ERR_PHP_FRAME for an
   * OPEN payload that names no mode this daemon knows.
   */
  async openMode(timeoutMs: number): Promise<OpenMode> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const held = this.#held.length === 1 ? this.#held[0]! : Buffer.concat(this.#held);
      if (held.length >= FRAME_HEADER_LEN) {
        if (held[0] !== FrameType.Open) return { mode: 'bound' };
        const end = FRAME_HEADER_LEN + held.readUInt32BE(1);
        if (held.length >= end) {
          try {
            return parseOpenPayload(held.subarray(FRAME_HEADER_LEN, end));
          } catch (err) {
            throw wsfpmError('WSFPM_ERR_PHP_FRAME', (err as FrameError).message);
          }
        }
      }
      const left = deadline - Date.now();
      if (this.ended || left <= 0 || this.#heldBytes > this.#holdLimit) return { mode: 'bound' };
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#heldWaiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#heldWaiter = null;
    }
  }

  get ended(): boolean {
    return this.#endError !== undefined;
  }

  /** For a refused upgrade: PHP's output until END_REQUEST, at most `max` bytes (the rest is dropped). */
  body(max: number): Promise<Buffer> {
    return new Promise((resolve) => {
      const done = (): void => resolve(Buffer.concat(this.#held).subarray(0, max));
      if (this.ended) return done();
      this.#bodyWaiter = () => done();
      this.#holdLimit = max;
      if (this.#heldBytes > max) this.destroy();
      else this.#req.resumeStdout();
    });
  }

  /** Whether frames flow over the side channel (PHP claimed it before answering). */
  get onChannel(): boolean {
    return this.#channel !== null;
  }

  /** Starts frame delivery; replays what PHP sent before the websocket existed. */
  attach(sink: PhpSink): void {
    // PHP claims the channel before it answers; one not claimed by now never will be.
    this.#offer?.withdraw();
    this.#sink = sink;
    this.#req.resumeStdout();
    this.#channel?.resume();
    const held = this.#held;
    this.#held = [];
    this.#heldBytes = 0;
    for (const chunk of held) {
      if (!this.#feed(this.#decoder, chunk)) return;
    }
    const channelHeld = this.#channelHeld;
    this.#channelHeld = [];
    for (const chunk of channelHeld) {
      if (!this.#feed(this.#channelDecoder!, chunk)) return;
    }
    this.#finish();
  }

  /** One frame to PHP. False: wait for onDrain before sending more. */
  send(type: number, payload: Buffer): boolean {
    return this.#write(encodeFrame(type, payload));
  }

  /** One frame whose payload is given in parts (a head and unchanged data), so nothing is copied. */
  sendParts(type: number, parts: Buffer[]): boolean {
    const length = parts.reduce((n, p) => n + p.length, 0);
    return this.#write([frameHeader(type, length), ...parts]);
  }

  /** Bytes written toward PHP that it has not taken yet: PHP is not reading. */
  get inputBacklog(): number {
    return this.#req.stdinBacklog + (this.#channel?.writableLength ?? 0);
  }

  /** EOF on PHP's input: its receive() returns null once it has read what came before. */
  endInput(): void {
    if (this.#channelOpen) this.#channel!.end();
    this.#req.endStdin();
  }

  pause(): void {
    this.#req.pauseStdout();
    this.#channel?.pause();
  }

  resume(): void {
    this.#req.resumeStdout();
    if (this.#sink) this.#channel?.resume();
  }

  /** Drops the FastCGI socket (and the channel): PHP is aborted at its next read or write. */
  destroy(): void {
    this.#offer?.withdraw();
    this.#channel?.destroy();
    this.#req.destroy();
  }

  #write(parts: Buffer[]): boolean {
    const channel = this.#channel;
    if (!channel) return this.#req.writeStdin(parts);
    // PHP has closed its end: what it will never read is dropped, as STDIN's is after the request ends.
    if (!this.#channelOpen || channel.writableEnded) return true;
    if (parts.length === 1) return channel.write(parts[0]!);
    channel.cork();
    let ok = true;
    for (const p of parts) ok = channel.write(p);
    channel.uncork();
    return ok;
  }

  #claimed(socket: Socket, maxMessage: number): void {
    this.#channel = socket;
    this.#channelOpen = true;
    this.#channelDecoder = new FrameDecoder(maxMessage, (frame) => this.#sink?.onFrame(frame));
    socket.on('data', (chunk: Buffer) => {
      if (this.#sink) return void this.#feed(this.#channelDecoder!, chunk);
      this.#channelHeld.push(chunk);
      this.#heldBytes += chunk.length;
      if (this.#heldBytes > this.#holdLimit) socket.pause();
    });
    socket.on('drain', () => this.#sink?.onDrain());
    // A reset is how a killed worker's channel ends; the request's own end says what happened.
    socket.on('error', () => {});
    socket.once('close', () => {
      this.#channelOpen = false;
      this.#finish();
    });
    // Held, like STDOUT, until attach.
    socket.resume();
  }

  /** Reports the end once both the request and the channel are over. */
  #finish(): void {
    if (this.#endError === undefined || !this.#sink) return;
    if (this.#channelOpen) {
      this.#lingerTimer ??= setTimeout(() => this.#channel?.destroy(), CHANNEL_LINGER_MS);
      return;
    }
    if (this.#lingerTimer) clearTimeout(this.#lingerTimer);
    const sink = this.#sink;
    this.#sink = null;
    sink.onEnd(this.#endError);
  }

  #onStdout(chunk: Buffer): void {
    if (!this.#sink) {
      this.#held.push(chunk);
      this.#heldBytes += chunk.length;
      this.#heldWaiter?.();
      if (this.#heldBytes > this.#holdLimit) {
        if (this.#bodyWaiter) this.destroy();
        else this.#req.pauseStdout();
      }
      return;
    }
    this.#feed(this.#decoder, chunk);
  }

  #feed(decoder: FrameDecoder, chunk: Buffer): boolean {
    try {
      decoder.push(chunk);
      return true;
    } catch (err) {
      if (!(err instanceof FrameError)) throw err;
      const sink = this.#sink;
      this.#sink = null;
      this.#channel?.destroy();
      this.#req.destroy();
      sink?.onEnd(wsfpmError('WSFPM_ERR_PHP_FRAME', err.message));
      return false;
    }
  }
}

/** The promise's value, or null if it takes longer than `ms`. */
function within<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([promise, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)))]).finally(() => clearTimeout(timer));
}
