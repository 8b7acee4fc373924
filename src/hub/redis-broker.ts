/**
 * Many wsfpm nodes behind a load balancer share channels, presence and
 * sends-by-id through Redis.
 *
 * - Messages: one pub/sub channel (`wsfpm:bus`); every node hears every
 *   publish, send and close and delivers to its own members. A node
 *   ignores what it sent itself (it delivered locally already).
 * - Registry: which node holds a connection (`wsfpm:conns`, id → node)
 *   and who is on a channel (`wsfpm:members:<channel>`, "node|id"), so a
 *   control API call on any node can count and list across nodes. Each
 *   node refreshes `wsfpm:node:<node>` (TTL 30 s); entries of a node that
 *   stopped refreshing are not counted.
 *
 * - History (redis-history.ts): channel history in Redis; a publish on a
 *   channel that keeps it is ordered by a script that also carries it on the
 *   bus with its offset and epoch (`o`, `e`).
 *
 * Redis down: commands fail fast (no offline queue: late chat messages are
 * worse than none), local delivery continues, the failure is logged once
 * per outage; on reconnect the node writes its registry entries again, and
 * takes out the ones of connections that left meanwhile (a Redis that kept
 * its data would otherwise count them as members for as long as this node
 * lives; at most STALE_MAX are remembered).
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { type Broker, type Hub } from './hub.ts';
import { type HistoryLimits } from './history.ts';
import { newEpoch, type HistorySource } from './history-keeper.ts';
import { RedisHistory } from './redis-history.ts';
import { type Log } from '../log.ts';

const BUS = 'wsfpm:bus';
const CONNS = 'wsfpm:conns';
const members = (channel: string): string => `wsfpm:members:${channel}`;
const alive = (node: string): string => `wsfpm:node:${node}`;
const HEARTBEAT_MS = 10_000;
const NODE_TTL_S = 30;
/** Registry removals that failed during an outage, remembered to be done on reconnect: enough for a busy node's churn over minutes. */
const STALE_MAX = 100_000;

type Head =
  | { k: 'pub'; n: string; c: string; b: boolean; x: string | null; o?: number; e?: string }
  | { k: 'hist'; n: string; c: string; t: number }
  | { k: 'send'; n: string; id: string; b: boolean }
  | { k: 'close'; n: string; id: string; code: number; reason: string };

function encode(head: Head, data: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.from(JSON.stringify(head));
  const len = Buffer.allocUnsafe(2);
  len.writeUInt16BE(h.length, 0);
  return Buffer.concat([len, h, data]);
}

function decode(buf: Buffer): { head: Head; data: Buffer } | null {
  if (buf.length < 2) return null;
  const n = buf.readUInt16BE(0);
  try {
    return { head: JSON.parse(buf.toString('utf8', 2, 2 + n)) as Head, data: buf.subarray(2 + n) };
  } catch {
    return null;
  }
}

export interface BrokerState {
  connected: boolean;
  /** Cross-node operations that failed because Redis was unreachable. */
  failures: number;
}

export class RedisBroker implements Broker, HistorySource {
  readonly node = randomBytes(8).toString('hex');
  readonly state: BrokerState = { connected: false, failures: 0 };
  readonly #pub: Redis;
  readonly #sub: Redis;
  readonly #hub: Hub;
  readonly #log: Log;
  #heartbeat: NodeJS.Timeout | null = null;
  #outage = false;
  #history: RedisHistory | null = null;
  /** Registry entries whose removal failed while Redis was unreachable, by connection id: the connection itself (`conn`) and/or channels it left. */
  readonly #stale = new Map<string, { conn: boolean; channels: Set<string> }>();

  private constructor(url: string, hub: Hub, log: Log) {
    this.#hub = hub;
    this.#log = log.child({ broker: 'redis', node: this.node });
    const options = { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: true, retryStrategy: (n: number) => Math.min(n * 200, 2000) };
    this.#pub = new Redis(url, options);
    this.#sub = new Redis(url, { ...options, enableOfflineQueue: true });
    for (const client of [this.#pub, this.#sub]) client.on('error', () => this.#down());
    this.#pub.on('ready', () => void this.#up());
    this.#sub.on('ready', () => void this.#sub.subscribe(BUS).catch(() => this.#down()));
    this.#sub.on('messageBuffer', (_channel: Buffer, message: Buffer) => this.#onMessage(message));
  }

  /** Connects (waiting at most a few seconds) and joins the bus; a Redis that is down now is retried in the background. */
  static async start(url: string, hub: Hub, log: Log): Promise<RedisBroker> {
    const broker = new RedisBroker(url, hub, log);
    hub.broker = broker;
    await Promise.all([broker.#pub.connect(), broker.#sub.connect()]).catch((err: Error) => {
      broker.#log.error({ code: 'WSFPM_ERR_BROKER_DOWN', detail: err.message }, 'Redis unreachable at start; delivering locally and retrying');
    });
    broker.#heartbeat = setInterval(() => void broker.#beat(), HEARTBEAT_MS);
    broker.#heartbeat.unref();
    return broker;
  }

  async stop(): Promise<void> {
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    try {
      if (this.state.connected) {
        const ids = this.#hub.list();
        const m = this.#pub.multi().del(alive(this.node));
        for (const info of ids) {
          m.hdel(CONNS, info.id);
          for (const c of info.channels) m.srem(members(c), `${this.node}|${info.id}`);
        }
        await m.exec();
      }
    } catch {
      // Going away anyway; the TTL cleans up.
    }
    this.#pub.disconnect();
    this.#sub.disconnect();
  }

  publish(channel: string, data: Buffer, binary: boolean, excludeId: string | null): void {
    this.#fire(this.#pub.publish(BUS, encode({ k: 'pub', n: this.node, c: channel, b: binary, x: excludeId }, data)));
  }

  send(id: string, data: Buffer, binary: boolean): void {
    this.#fire(this.#pub.publish(BUS, encode({ k: 'send', n: this.node, id, b: binary }, data)));
  }

  close(id: string, code: number, reason: string): void {
    this.#fire(this.#pub.publish(BUS, encode({ k: 'close', n: this.node, id, code, reason })));
  }

  added(id: string): void {
    this.#fire(this.#pub.hset(CONNS, id, this.node));
  }

  removed(id: string, channels: string[]): void {
    const m = this.#pub.multi().hdel(CONNS, id);
    for (const c of channels) m.srem(members(c), `${this.node}|${id}`);
    this.#fire(m.exec(), () => this.#remember(id, true, channels));
  }

  joined(channel: string, id: string): void {
    this.#fire(this.#pub.sadd(members(channel), `${this.node}|${id}`));
  }

  left(channel: string, id: string): void {
    this.#fire(this.#pub.srem(members(channel), `${this.node}|${id}`), () => this.#remember(id, false, [channel]));
  }

  /** Members of a channel on every live node; null when Redis cannot be asked. */
  async members(channel: string): Promise<string[] | null> {
    try {
      const entries = await this.#pub.smembers(members(channel));
      const live = await this.liveNodes(entries.map((e) => e.split('|')[0]!));
      return entries.filter((e) => live.has(e.split('|')[0]!)).map((e) => e.split('|')[1]!);
    } catch {
      return null;
    }
  }

  /** Channels starting with `prefix` that have a member on a live node; null when Redis cannot be asked. */
  async channels(prefix: string): Promise<string[] | null> {
    try {
      // The prefix comes from a request: its glob characters are escaped, so it matches literally.
      const pattern = `${members(prefix).replace(/[*?[\]\\]/g, (c) => `\\${c}`)}*`;
      const keys: string[] = [];
      let cursor = '0';
      do {
        const [next, batch] = await this.#pub.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
        cursor = next;
        keys.push(...batch);
      } while (cursor !== '0');
      const found = await Promise.all(keys.map(async (key) => {
        const entries = await this.#pub.smembers(key);
        const live = await this.liveNodes(entries.map((e) => e.split('|')[0]!));
        return entries.some((e) => live.has(e.split('|')[0]!)) ? key.slice(members('').length) : null;
      }));
      return found.filter((c): c is string => c !== null);
    } catch {
      return null;
    }
  }

  /** The live node holding a connection, or null. */
  async nodeOf(id: string): Promise<string | null> {
    try {
      const node = await this.#pub.hget(CONNS, id);
      if (!node) return null;
      return (await this.liveNodes([node])).has(node) ? node : null;
    } catch {
      return null;
    }
  }

  /** Channel history in Redis (--history-size > 0). */
  history(limits: HistoryLimits): RedisHistory {
    this.#history = new RedisHistory(limits, {
      redis: this.#pub,
      bus: BUS,
      histMessage: (c) => encode({ k: 'hist', n: this.node, c, t: limits.ttl }),
      pubHeadPrefix: (c, b, x) => JSON.stringify({ k: 'pub', n: this.node, c, b, x }).slice(0, -1),
    }, newEpoch);
    if (this.state.connected) void this.#history.scan().catch(() => this.#down());
    return this.#history;
  }

  /** The client other shared state (Pusher presence) is kept with; its commands fail fast like the broker's own. */
  get redis(): Redis {
    return this.#pub;
  }

  /** Which of these nodes still refresh their heartbeat. */
  async liveNodes(nodes: string[]): Promise<Set<string>> {
    const unique = [...new Set(nodes)];
    if (unique.length === 0) return new Set();
    const flags = await this.#pub.mget(...unique.map(alive));
    return new Set(unique.filter((_, i) => flags[i] !== null));
  }

  #onMessage(message: Buffer): void {
    const msg = decode(message);
    if (!msg || msg.head.n === this.node) return;
    const h = msg.head;
    if (h.k === 'pub' && h.o !== undefined && h.e !== undefined) {
      this.#history?.learned(h.c, 1_000);
      this.#hub.publishLocal(h.c, msg.data, h.b, h.x, { epoch: h.e, offset: h.o });
    } else if (h.k === 'pub') this.#hub.publishLocal(h.c, msg.data, h.b, h.x);
    else if (h.k === 'hist') this.#history?.learned(h.c, h.t);
    else if (h.k === 'send') this.#hub.sendLocal(h.id, msg.data, h.b);
    else if (h.k === 'close') this.#hub.closeLocal(h.id, h.code, h.reason);
  }

  async #beat(): Promise<void> {
    await this.#pub.set(alive(this.node), '1', 'EX', NODE_TTL_S).catch(() => this.#down());
  }

  /** (Re)writes this node's registry: after a Redis outage its entries may be gone. */
  async #up(): Promise<void> {
    try {
      const m = this.#pub.multi().set(alive(this.node), '1', 'EX', NODE_TTL_S);
      // Removals first: a connection that left a channel and joined it again is written back below.
      const stale = [...this.#stale];
      this.#stale.clear();
      for (const [id, entry] of stale) {
        if (entry.conn) m.hdel(CONNS, id);
        for (const c of entry.channels) m.srem(members(c), `${this.node}|${id}`);
      }
      for (const info of this.#hub.list()) {
        m.hset(CONNS, info.id, this.node);
        for (const c of info.channels) m.sadd(members(c), `${this.node}|${info.id}`);
      }
      await m.exec().catch((err: unknown) => {
        for (const [id, entry] of stale) this.#remember(id, entry.conn, entry.channels);
        throw err;
      });
      await this.#history?.scan();
      this.state.connected = true;
      if (this.#outage) this.#log.info({ code: 'WSFPM_BROKER_UP' }, 'Redis reachable again; cross-node delivery resumed');
      this.#outage = false;
    } catch {
      this.#down();
    }
  }

  #down(): void {
    this.state.connected = false;
    if (!this.#outage) this.#log.error({ code: 'WSFPM_ERR_BROKER_DOWN' }, 'Redis unreachable; delivering locally only until it is back');
    this.#outage = true;
  }

  /** `undo`: what to remember for the reconnect when the command did not reach Redis. */
  #fire(p: Promise<unknown>, undo?: () => void): void {
    p.catch(() => {
      this.state.failures++;
      undo?.();
      this.#down();
    });
  }

  #remember(id: string, conn: boolean, channels: Iterable<string>): void {
    let entry = this.#stale.get(id);
    if (!entry) {
      if (this.#stale.size >= STALE_MAX) return;
      entry = { conn: false, channels: new Set() };
      this.#stale.set(id, entry);
    }
    entry.conn ||= conn;
    for (const c of channels) entry.channels.add(c);
  }
}
