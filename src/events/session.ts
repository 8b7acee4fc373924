/**
 * One events-mode connection: the websocket the daemon holds, the inputs
 * waiting for its next event, its meta, and its membership of the hub. It
 * runs no PHP itself; the dispatcher runs its events one at a time.
 *
 * Backpressure: client messages queue while an event runs; at `eventQueue`
 * messages or `highWater` bytes the client's socket is paused (TCP slows the
 * client) until the queue is half empty. Channel messages for PHP cannot be
 * paused at their source, so beyond twice that bound the connection closes
 * with 1013 rather than queueing without end.
 *
 * Close order: the client leaves (or is closed by PHP, a limit, a failed
 * event, a shutdown) → the hub forgets it → the messages already queued run
 * as events → one close event with the code → the slot is released.
 */
import type { WebSocket, RawData } from 'ws';
import { FrameType, closePayload, encodeFrame, frameHeader } from '../protocol/frames.ts';
import { channelHead } from '../protocol/channel-frames.ts';
import { truncateReason } from '../bridge/bridge.ts';
import { TokenBucket } from '../token-bucket.ts';
import { type Hub, type Member } from '../hub/hub.ts';
import { sendPrepared, type PreparedFrame } from '../hub/prepared-frame.ts';
import { type Action } from './actions.ts';
import { type Position } from '../hub/history.ts';
import { ERRORS, wsfpmError, type WsfpmError } from '../errors.ts';

/** What a session needs of its dispatcher. */
export interface SessionHost {
  readonly hub: Hub;
  limits(): { eventQueue: number; highWater: number; messageRate: number };
  /** The session has inputs (or its close event) waiting. */
  ready(session: EventSession): void;
  /** Counts one message toward a client or from one, for metrics. */
  counted(direction: 'in' | 'out', bytes: number): void;
  /** One line for what happened to this connection. */
  log(level: 'info' | 'warn', facts: Record<string, unknown>, message: string): void;
}

export interface QueuedEvent {
  type: 'message' | 'close';
  /** Frames of the body, as header and payload parts. */
  body: Buffer[];
  /** ms since the epoch when its first input arrived: the event timeout counts from here. */
  queuedAt: number;
}

interface Input {
  parts: Buffer[];
  bytes: number;
  fromClient: boolean;
  at: number;
}

export class EventSession implements Member {
  readonly since = Date.now();
  meta: Buffer | null = null;
  /** An event is running (the open event, from the start). */
  running = true;
  /** Waiting in the dispatcher's queue. */
  scheduled = false;
  /** Answered pings since the last sweep. */
  alive = true;
  #inputs: Input[] = [];
  #queuedBytes = 0;
  #queuedFromClient = 0;
  #paused = false;
  #wsOpen = true;
  #closeSent = false;
  /** The code the daemon closed with, which the close event reports rather than the client's echo. */
  #closedWith: number | null = null;
  /** The close event's body once the websocket is closed; null again once it was taken. */
  #closeEvent: { payload: Buffer; at: number } | null = null;
  #closeTaken = false;
  readonly #bucket: TokenBucket;

  constructor(
    readonly id: string,
    readonly path: string,
    readonly ip: string,
    /** The upgrade's CGI parameters, encoded once; each event adds its own few. */
    readonly params: Buffer,
    readonly batch: number,
    readonly ws: WebSocket,
    private readonly host: SessionHost,
    /** Where the client's history subscriptions resume (`wsfpm_resume`). */
    readonly resume?: Map<string, Position>,
  ) {
    this.#bucket = new TokenBucket(host.limits().messageRate);
    ws.on('message', (data: RawData, isBinary: boolean) => this.#onMessage(data as Buffer, isBinary));
    ws.on('pong', () => {
      this.alive = true;
    });
    ws.on('close', (code: number, reason: Buffer) => this.#onClose(code, reason));
    host.hub.add(this);
  }

  get open(): boolean {
    return this.#wsOpen && !this.#closeSent;
  }

  /** Every input and the close event have run: the connection is over. */
  get finished(): boolean {
    return this.#closeTaken && !this.running && this.#inputs.length === 0;
  }

  get hasWork(): boolean {
    return this.#inputs.length > 0 || (this.#closeEvent !== null && !this.#closeTaken);
  }

  get queued(): number {
    return this.#inputs.length;
  }

  /** The next event: up to `batch` queued inputs, or the close event once none is left. */
  take(): QueuedEvent | null {
    if (this.#inputs.length > 0) {
      const n = Math.min(this.batch, this.#inputs.length);
      const taken = this.#inputs.splice(0, n);
      const body: Buffer[] = [];
      for (const input of taken) {
        body.push(...input.parts);
        this.#queuedBytes -= input.bytes;
        if (input.fromClient) this.#queuedFromClient--;
      }
      const { eventQueue, highWater } = this.host.limits();
      if (this.#paused && this.#queuedFromClient <= eventQueue / 2 && this.#queuedBytes <= highWater / 2) {
        this.#paused = false;
        if (this.#wsOpen) this.ws.resume();
      }
      return { type: 'message', body, queuedAt: taken[0]!.at };
    }
    if (this.#closeEvent && !this.#closeTaken) {
      this.#closeTaken = true;
      return { type: 'close', body: encodeFrame(FrameType.Close, this.#closeEvent.payload), queuedAt: this.#closeEvent.at };
    }
    return null;
  }

  /** Applies an event's checked actions in order; in the close event only those that reach others. */
  apply(actions: readonly Action[], type: 'open' | 'message' | 'close'): void {
    const self = type !== 'close';
    for (const a of actions) {
      switch (a.kind) {
        case 'send':
          if (self) this.deliverDirect(a.data, a.binary);
          break;
        case 'close':
          if (self) this.close(a.code, a.reason);
          break;
        case 'subscribe':
          if (self && this.#wsOpen) this.host.hub.subscribe(this.id, a.channel, a.forward, a.history);
          break;
        case 'unsubscribe':
          if (self) this.host.hub.unsubscribe(this.id, a.channel);
          break;
        case 'publish':
          this.host.hub.publish(a.channel, a.data, a.binary, a.excludeSelf ? this.id : null);
          break;
        case 'sendTo':
          this.host.hub.send(a.id, a.data, a.binary);
          break;
        case 'meta':
          if (self) this.meta = a.meta;
          break;
      }
    }
  }

  /** An event failed: its actions were dropped; the client learns only that we failed (1011). */
  failed(error: WsfpmError, type: 'open' | 'message' | 'close'): void {
    this.host.log('warn', { conn: this.id, event: type, code: error.code, detail: error.detail }, 'event failed; connection closed');
    this.close(1011, 'internal error');
  }

  /** Closes with an error's close code and its public message (1011's cause stays in the log). */
  fail(error: WsfpmError): void {
    this.host.log('warn', { conn: this.id, code: error.code, detail: error.detail, close: error.closeCode }, 'connection failed');
    this.close(error.closeCode, error.closeCode === 1011 ? 'internal error' : ERRORS[error.code].message);
  }

  deliverChannel(channel: string, data: Buffer, binary: boolean, forward: boolean, frame: PreparedFrame): boolean {
    if (forward) return this.deliverDirect(data, binary, frame);
    if (!this.open) return false;
    const { eventQueue, highWater } = this.host.limits();
    if (this.#inputs.length >= 2 * eventQueue || this.#queuedBytes + data.length > 2 * highWater) {
      this.fail(wsfpmError('WSFPM_ERR_SLOW_CONSUMER', `more than ${2 * eventQueue} inputs or ${2 * highWater} bytes queued toward PHP`));
      return false;
    }
    const head = channelHead(channel, binary);
    this.#queue([frameHeader(FrameType.Channel, head.length + data.length), head, data], false);
    return true;
  }

  deliverDirect(data: Buffer, binary: boolean, frame?: PreparedFrame): boolean {
    if (!this.open) return false;
    if (this.ws.bufferedAmount > this.host.limits().highWater) {
      this.fail(wsfpmError('WSFPM_ERR_SLOW_CONSUMER', `more than ${this.host.limits().highWater} bytes queued toward the client`));
      return false;
    }
    this.host.counted('out', data.length);
    if (frame) sendPrepared(this.ws, frame);
    else this.ws.send(data, { binary });
    return true;
  }

  close(code: number, reason: string): void {
    if (!this.open) return;
    this.#closeSent = true;
    this.#closedWith = code;
    this.ws.close(code, truncateReason(reason));
  }

  #onMessage(payload: Buffer, isBinary: boolean): void {
    this.alive = true;
    if (!this.open) return;
    if (!this.#bucket.take()) return this.fail(wsfpmError('WSFPM_ERR_RATE_LIMIT', `over ${this.host.limits().messageRate} messages per second`));
    this.host.counted('in', payload.length);
    this.#queue(encodeFrame(isBinary ? FrameType.Binary : FrameType.Text, payload), true);
    const { eventQueue, highWater } = this.host.limits();
    if (!this.#paused && (this.#queuedFromClient >= eventQueue || this.#queuedBytes >= highWater)) {
      this.#paused = true;
      this.ws.pause();
    }
  }

  #queue(parts: Buffer[], fromClient: boolean): void {
    let bytes = 0;
    for (const p of parts) bytes += p.length;
    this.#inputs.push({ parts, bytes, fromClient, at: Date.now() });
    this.#queuedBytes += bytes;
    if (fromClient) this.#queuedFromClient++;
    if (!this.running) this.host.ready(this);
  }

  #onClose(code: number, reason: Buffer): void {
    this.#wsOpen = false;
    this.host.hub.remove(this.id);
    const closeCode = this.#closedWith ?? code;
    this.#closeEvent = { payload: closePayload(closeCode, truncateReason(reason.toString('utf8'))), at: Date.now() };
    this.host.log('info', { conn: this.id, path: this.path, ip: this.ip, code: closeCode, durationMs: Date.now() - this.since }, 'websocket closed');
    if (!this.running) this.host.ready(this);
  }
}
