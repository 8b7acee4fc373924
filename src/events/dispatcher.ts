/**
 * The events-mode strategy: the daemon holds each websocket and runs the
 * site's script once per event (docs/protocol.md, "Events mode"). Sessions
 * with inputs wait in one FIFO; at most `eventConcurrency` event requests
 * run at once across all of them, one per session, so each connection's
 * events stay in order and no connection holds a worker between events.
 */
import type { WebSocket } from 'ws';
import { type FpmAddress } from '../fastcgi/address.ts';
import { encodePairs } from '../fastcgi/records.ts';
import { type PhpEndpoint } from '../bridge/php-endpoint.ts';
import { FrameError, type Frame } from '../protocol/frames.ts';
import { type Hub } from '../hub/hub.ts';
import { type BridgeIdentity } from '../bridge/bridge.ts';
import { wsfpmError, WsfpmError } from '../errors.ts';
import { type Log } from '../log.ts';
import { parseActions } from './actions.ts';
import { ownCopy } from './own-copy.ts';
import { callEvent } from './event-call.ts';
import { EventSession, type QueuedEvent, type SessionHost } from './session.ts';

export interface DispatcherSettings {
  eventConcurrency: number;
  eventTimeout: number;
  eventQueue: number;
  highWater: number;
  messageRate: number;
  maxMessage: number;
  maxHeaderBlock: number;
  maxMeta: number;
  maxChannels: number;
  pingInterval: number;
}

/** Live counters for metrics; the dispatcher knows nothing of how they are exported. */
export interface EventObserver {
  message(direction: 'in' | 'out', bytes: number): void;
  /** One event ran: its type, whether its actions were applied, seconds from queued to applied. */
  event(type: 'open' | 'message' | 'close', ok: boolean, seconds: number): void;
}

/** Parameters the daemon sets per event; the upgrade's own values of these are not replayed. */
const PER_EVENT = new Set(['CONTENT_LENGTH', 'REQUEST_TIME_FLOAT', 'WSFPM_EVENT']);

export class EventDispatcher {
  readonly sessions = new Set<EventSession>();
  #ready: EventSession[] = [];
  #readyHead = 0;
  #running = 0;
  #pinger: NodeJS.Timeout | null = null;
  readonly #host: SessionHost;
  readonly #released = new WeakMap<EventSession, () => void>();

  constructor(
    private readonly fpm: FpmAddress,
    readonly hub: Hub,
    private readonly settings: () => DispatcherSettings,
    private readonly log: Log,
    private readonly observer: EventObserver,
  ) {
    const self = this;
    this.#host = {
      hub,
      limits: () => this.settings(),
      ready: (s) => self.#schedule(s),
      counted: (direction, bytes) => observer.message(direction, bytes),
      log: (level, facts, message) => log[level](facts, message),
    };
    this.#schedulePing();
  }

  /** Read again before every sweep, so a SIGHUP's --ping-interval applies (0: no pings; checked again a second later). */
  #schedulePing(): void {
    const ping = this.settings().pingInterval;
    this.#pinger = setTimeout(() => {
      if (ping > 0) this.#sweep();
      if (this.#pinger) this.#schedulePing();
    }, ping > 0 ? ping : 1000);
    this.#pinger.unref();
  }

  get running(): number {
    return this.#running;
  }

  /** Inputs waiting in every session. */
  get queued(): number {
    let n = 0;
    for (const s of this.sessions) n += s.queued;
    return n;
  }

  /**
   * Takes over an accepted upgrade whose script chose events mode. The open
   * request is still running: its actions follow the OPEN frame and apply
   * when it ends. `params` are the upgrade's; `onGone` runs once the close
   * event is over.
   */
  adopt(ws: WebSocket, php: PhpEndpoint, who: BridgeIdentity, params: Iterable<readonly [string, string]>, batch: number, onGone: () => void): EventSession {
    const base = ownCopy(encodePairs([...params].filter(([k]) => !PER_EVENT.has(k))));
    const session = new EventSession(who.id, who.path, who.ip, base, batch, ws, this.#host, who.resume);
    this.sessions.add(session);
    this.#released.set(session, onGone);
    const started = Date.now();
    const frames: Frame[] = [];
    // The library ends its open request itself; EOF now frees the worker even if it waits for input.
    php.endInput();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      php.destroy();
    }, this.settings().eventTimeout);
    timer.unref();
    php.attach({
      onFrame: (frame) => frames.push(frame),
      onDrain: () => {},
      onEnd: (error) => {
        clearTimeout(timer);
        const failure = error ?? (timedOut ? wsfpmError('WSFPM_ERR_EVENT_TIMEOUT', 'the open event did not end in time') : php.sawFatal ? wsfpmError('WSFPM_ERR_PHP_DIED', 'PHP reported a fatal error') : null);
        this.#finish(session, 'open', failure ? Promise.reject(failure) : Promise.resolve(frames), started);
      },
    });
    return session;
  }

  /** Shutdown: every client is closed with 1001 and gets its close event; resolves when all ran or `graceMs` passed. */
  async drain(graceMs: number): Promise<void> {
    for (const s of this.sessions) s.close(1001, 'server shutting down');
    const deadline = Date.now() + graceMs;
    while (this.sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const s of this.sessions) s.ws.terminate();
  }

  stop(): void {
    if (this.#pinger) clearTimeout(this.#pinger);
    this.#pinger = null;
  }

  #schedule(session: EventSession): void {
    if (session.scheduled || session.running) return;
    session.scheduled = true;
    this.#ready.push(session);
    this.#pump();
  }

  #pump(): void {
    const limit = this.settings().eventConcurrency;
    while (this.#running < limit && this.#readyHead < this.#ready.length) {
      const session = this.#ready[this.#readyHead++]!;
      session.scheduled = false;
      const event = session.take();
      if (event) this.#start(session, event);
      else this.#forgetIfFinished(session);
    }
    // Compact once the consumed head dominates, so the queue's memory follows its length.
    if (this.#readyHead > 1024 && this.#readyHead * 2 > this.#ready.length) {
      this.#ready = this.#ready.slice(this.#readyHead);
      this.#readyHead = 0;
    }
  }

  #start(session: EventSession, event: QueuedEvent): void {
    const s = this.settings();
    session.running = true;
    this.#running++;
    const perEvent: Array<[string, string | Buffer]> = [
      ['WSFPM_EVENT', event.type],
      ['CONTENT_LENGTH', String(event.body.reduce((n, b) => n + b.length, 0))],
      ['REQUEST_TIME_FLOAT', (Date.now() / 1000).toFixed(6)],
    ];
    if (session.meta) perEvent.push(['WSFPM_META', session.meta]);
    const params = Buffer.concat([session.params, encodePairs(perEvent)]);
    const answer = callEvent(this.fpm, params, event.body, {
      maxMessage: s.maxMessage,
      maxHeaderBlock: s.maxHeaderBlock,
      deadline: event.queuedAt + s.eventTimeout,
      onStderr: (line) => this.log.warn({ conn: session.id, stderr: line }, 'PHP wrote to stderr'),
    });
    this.#finish(session, event.type, answer, event.queuedAt);
  }

  /** Applies an event's answer (all its actions, or none), then lets the session's next event run. */
  #finish(session: EventSession, type: 'open' | 'message' | 'close', answer: Promise<Frame[]>, queuedAt: number): void {
    const s = this.settings();
    answer
      .then((frames) => {
        const actions = parseActions(frames, { maxMeta: s.maxMeta, maxChannels: s.maxChannels, subscribed: this.hub.channelsOf(session.id) });
        session.apply(actions, type);
        this.observer.event(type, true, (Date.now() - queuedAt) / 1000);
      })
      .catch((err: unknown) => {
        const error = err instanceof WsfpmError ? err : err instanceof FrameError ? wsfpmError('WSFPM_ERR_PHP_FRAME', err.message) : wsfpmError('WSFPM_ERR_PHP_DIED', `internal error: ${String(err)}`, err);
        session.failed(error, type);
        this.observer.event(type, false, (Date.now() - queuedAt) / 1000);
      })
      .finally(() => {
        // The open event runs in the upgrade's own request, outside --event-concurrency.
        if (type !== 'open') this.#running--;
        session.running = false;
        if (session.hasWork) this.#schedule(session);
        else this.#forgetIfFinished(session);
        this.#pump();
      });
  }

  #forgetIfFinished(session: EventSession): void {
    if (!session.finished || !this.sessions.delete(session)) return;
    this.#released.get(session)?.();
  }

  /** One timer for every connection: a client that answered no ping since the last sweep is dropped. */
  #sweep(): void {
    for (const s of this.sessions) {
      if (!s.open) continue;
      if (!s.alive) {
        this.log.info({ conn: s.id, code: 'WSFPM_ERR_PING_TIMEOUT' }, 'client did not answer pings; dropping it');
        s.ws.terminate();
        continue;
      }
      s.alive = false;
      s.ws.ping();
    }
  }
}
