/**
 * Prometheus metrics (prom-client), served on the control listener at
 * /metrics. One registry per daemon, so tests running several daemons in
 * one process do not mix their counts.
 */
import client from 'prom-client';

export class Metrics {
  readonly registry = new client.Registry();
  readonly open: client.Gauge;
  readonly opened: client.Counter;
  readonly closed: client.Counter<'code'>;
  readonly messages: client.Counter<'direction'>;
  readonly bytes: client.Counter<'direction'>;
  readonly rejects: client.Counter<'reason'>;
  readonly limits: client.Counter<'limit'>;
  readonly headerWait: client.Histogram;
  /** Label children bound once: the per-message path must not build label objects. */
  readonly hot: { messagesIn: client.Counter.Internal; messagesOut: client.Counter.Internal; bytesIn: client.Counter.Internal; bytesOut: client.Counter.Internal };
  readonly duration: client.Histogram;
  readonly events: client.Counter<'type' | 'outcome'>;
  readonly eventSeconds: client.Histogram<'type'>;
  #eventState: () => { connections: number; queued: number; running: number } = () => ({ connections: 0, queued: 0, running: 0 });
  readonly pusherErrors: client.Counter<'code'>;
  readonly pusherEvents: client.Counter<'source'>;
  #pusherOpen: () => number = () => 0;
  #fpmHeld: () => Array<{ fpm: string; held: number }> = () => [];

  constructor(collectPool: () => Promise<{ busy: number; idle: number } | null>, broker: () => { connected: boolean; failures: number } | null) {
    const r = [this.registry];
    this.open = new client.Gauge({ name: 'wsfpm_connections_open', help: 'Websocket connections bound to PHP now.', registers: r });
    this.opened = new client.Counter({ name: 'wsfpm_connections_total', help: 'Websocket connections accepted.', registers: r });
    this.closed = new client.Counter({ name: 'wsfpm_connections_closed_total', help: 'Websocket connections closed, by close code.', labelNames: ['code'], registers: r });
    this.messages = new client.Counter({ name: 'wsfpm_messages_total', help: 'Websocket messages, by direction (in: from clients).', labelNames: ['direction'], registers: r });
    this.bytes = new client.Counter({ name: 'wsfpm_message_bytes_total', help: 'Websocket payload bytes, by direction.', labelNames: ['direction'], registers: r });
    this.rejects = new client.Counter({ name: 'wsfpm_rejects_total', help: 'Upgrades refused, by reason (error code, or php_STATUS when PHP refused).', labelNames: ['reason'], registers: r });
    this.limits = new client.Counter({ name: 'wsfpm_limit_hits_total', help: 'Limits hit by open connections, by limit.', labelNames: ['limit'], registers: r });
    this.hot = {
      messagesIn: this.messages.labels('in'),
      messagesOut: this.messages.labels('out'),
      bytesIn: this.bytes.labels('in'),
      bytesOut: this.bytes.labels('out'),
    };
    this.headerWait = new client.Histogram({
      name: 'wsfpm_fastcgi_header_seconds',
      help: 'Time from opening the FastCGI request to PHP\'s header block.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: r,
    });
    this.duration = new client.Histogram({
      name: 'wsfpm_connection_duration_seconds',
      help: 'Life of a bound connection (one FastCGI request).',
      buckets: [0.1, 1, 10, 60, 300, 1800, 3600, 6 * 3600, 24 * 3600],
      registers: r,
    });
    new client.Gauge({
      name: 'wsfpm_pool_workers',
      help: 'php-fpm workers by state, from the pool status listener (when configured).',
      labelNames: ['state'],
      registers: r,
      async collect() {
        const p = await collectPool();
        if (!p) return;
        this.set({ state: 'busy' }, p.busy);
        this.set({ state: 'idle' }, p.idle);
      },
    });
    new client.Gauge({
      name: 'wsfpm_broker_connected',
      help: '1 when the Redis broker is connected, 0 when not; absent without --redis.',
      registers: r,
      collect() {
        const b = broker();
        if (b) this.set(b.connected ? 1 : 0);
      },
    });
    new client.Gauge({
      name: 'wsfpm_broker_failures',
      help: 'Cross-node operations lost to Redis outages since start.',
      registers: r,
      collect() {
        const b = broker();
        if (b) this.set(b.failures);
      },
    });
    this.events = new client.Counter({ name: 'wsfpm_events_total', help: 'Events-mode events run through PHP, by type (open, message, close) and outcome (applied, failed).', labelNames: ['type', 'outcome'], registers: r });
    this.eventSeconds = new client.Histogram({
      name: 'wsfpm_event_seconds',
      help: 'Events mode: time from an event\'s first input to its actions applied.',
      labelNames: ['type'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: r,
    });
    const state = (): { connections: number; queued: number; running: number } => this.#eventState();
    new client.Gauge({ name: 'wsfpm_event_connections_open', help: 'Events-mode connections held by the daemon now.', registers: r, collect() { this.set(state().connections); } });
    new client.Gauge({ name: 'wsfpm_event_queue_depth', help: 'Events mode: inputs waiting for their connection\'s next event, all connections together.', registers: r, collect() { this.set(state().queued); } });
    new client.Gauge({ name: 'wsfpm_events_running', help: 'Events mode: event requests in php-fpm now.', registers: r, collect() { this.set(state().running); } });
    const fpmHeld = (): Array<{ fpm: string; held: number }> => this.#fpmHeld();
    new client.Gauge({
      name: 'wsfpm_fpm_connections',
      help: 'Bound connections and upgrades being decided, per php-fpm master (--fpm a,b or managed masters).',
      labelNames: ['fpm'],
      registers: r,
      collect() {
        for (const { fpm, held } of fpmHeld()) this.set({ fpm }, held);
      },
    });
    const pusherOpen = (): number => this.#pusherOpen();
    new client.Gauge({ name: 'wsfpm_pusher_connections_open', help: 'Pusher protocol (pusher-js, laravel-echo) connections now.', registers: r, collect() { this.set(pusherOpen()); } });
    this.pusherErrors = new client.Counter({ name: 'wsfpm_pusher_errors_total', help: 'Pusher protocol refusals (connections, messages, subscriptions, API requests), by error code.', labelNames: ['code'], registers: r });
    this.pusherEvents = new client.Counter({ name: 'wsfpm_pusher_events_total', help: 'Pusher events published, by source (api: the HTTP API, per channel; client: client events).', labelNames: ['source'], registers: r });
    client.collectDefaultMetrics({ register: this.registry, prefix: 'wsfpm_process_' });
  }

  /** One events-mode event ran. */
  observeEvent(type: string, ok: boolean, seconds: number): void {
    this.events.inc({ type, outcome: ok ? 'applied' : 'failed' });
    this.eventSeconds.observe({ type }, seconds);
  }

  /** Where the Pusher connection gauge reads its value at scrape time. */
  watchPusher(open: () => number): void {
    this.#pusherOpen = open;
  }

  /** Where the per-master gauge reads its values at scrape time. */
  watchFpm(held: () => Array<{ fpm: string; held: number }>): void {
    this.#fpmHeld = held;
  }

  /** Where the events-mode gauges read their values at scrape time. */
  watchEvents(state: () => { connections: number; queued: number; running: number }): void {
    this.#eventState = state;
  }
}
