/**
 * Channel history in Redis, shared by every node, so a client may resume on
 * another node after a deploy.
 *
 * - `wsfpm:hist:<channel>`: a hash, `e` the epoch and `o` the last offset.
 *   A Redis that lost it (flushed, restarted without persistence, expired)
 *   makes a new epoch: clients of the old one are told they lost history.
 * - `wsfpm:hlog:<channel>`: a stream, one entry per message with the id
 *   `OFFSET-1` (so XRANGE reads by offset), trimmed to --history-size by
 *   XADD MAXLEN; `t` is the publish time, for --history-ttl.
 *
 * Both expire --history-ttl after the last publish or history subscription.
 * Offsets come from HINCRBY inside one script that also XADDs and PUBLISHes
 * on the bus, so every node sees a channel's messages in offset order. Which
 * channels keep history is learned from the bus (`hist` messages at each
 * history subscription and refresh) and, at start, by a SCAN: a publish is
 * recorded only on a node that knows its channel keeps history.
 */
import { type Redis } from 'ioredis';
import { recoverFrom, type HistoryLimits, type HistoryStore, type Position, type Recovery } from './history.ts';

export const metaKey = (channel: string): string => `wsfpm:hist:${channel}`;
const logKey = (channel: string): string => `wsfpm:hlog:${channel}`;

/** Creates the channel's history (new epoch, empty stream) when Redis has none. */
const ENSURE = `
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
end`;

// ARGV: newEpoch, maxlen, data, binary, now, ttl, head prefix (JSON less its brace), bus.
const APPEND = `${ENSURE}
local o = redis.call('HINCRBY', KEYS[1], 'o', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], o .. '-1', 'd', ARGV[3], 'b', ARGV[4], 't', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
local head = ARGV[7] .. ',"o":' .. o .. ',"e":"' .. epoch .. '"}'
redis.call('PUBLISH', ARGV[8], string.char(math.floor(#head / 256), #head % 256) .. head .. ARGV[3])
return {o, epoch}`;

// ARGV: newEpoch, ttl, since offset (-1: none), since epoch, bus, hist message.
const RECOVER = `${ENSURE}
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[5], ARGV[6])
local top = tonumber(redis.call('HGET', KEYS[1], 'o'))
local since = tonumber(ARGV[3])
if since < 0 or ARGV[4] ~= epoch or since >= top then return {epoch, top, {}} end
return {epoch, top, redis.call('XRANGE', KEYS[2], (since + 1) .. '-1', '+')}`;

type StreamEntry = [Buffer, Buffer[]];
interface Scripted {
  wsfpmHistAppend(meta: string, log: string, ...args: Array<string | Buffer | number>): Promise<[number, string]>;
  wsfpmHistRecoverBuffer(meta: string, log: string, ...args: Array<string | Buffer | number>): Promise<[Buffer, number, StreamEntry[]]>;
}

/** What the store needs of its broker: the client, the bus and how its messages are framed. */
export interface HistoryBus {
  readonly redis: Redis;
  readonly bus: string;
  /** The bus message saying this node keeps the channel's history. */
  histMessage(channel: string): Buffer;
  /** The JSON head of a publish less its closing brace; the script appends the offset and epoch. */
  pubHeadPrefix(channel: string, binary: boolean, excludeId: string | null): string;
}

/** Used when Redis cannot be asked at subscribe time: no epoch a client could resume from. */
const UNAVAILABLE = 'unavailable';

export class RedisHistory implements HistoryStore {
  /** Channels known to keep history, to when (ms): from this node's subscriptions, the bus and the start-up SCAN. */
  readonly #kept = new Map<string, { until: number; refreshed: number }>();

  constructor(
    private readonly limits: HistoryLimits,
    private readonly bus: HistoryBus,
    private readonly newEpoch: () => string,
    private readonly now: () => number = Date.now,
  ) {
    const redis = bus.redis as Redis & Partial<Scripted>;
    if (!redis.wsfpmHistAppend) {
      redis.defineCommand('wsfpmHistAppend', { numberOfKeys: 2, lua: APPEND });
      redis.defineCommand('wsfpmHistRecover', { numberOfKeys: 2, lua: RECOVER });
    }
  }

  get #scripts(): Scripted {
    return this.bus.redis as unknown as Scripted;
  }

  keeps(channel: string): boolean {
    const k = this.#kept.get(channel);
    if (!k) return false;
    if (k.until > this.now()) return true;
    this.#kept.delete(channel);
    return false;
  }

  /** Another node (or the start-up SCAN) says the channel keeps history for `ttl` more ms. */
  learned(channel: string, ttl: number): void {
    const until = this.now() + ttl;
    const k = this.#kept.get(channel);
    if (k) k.until = Math.max(k.until, until);
    else this.#kept.set(channel, { until, refreshed: 0 });
  }

  recover(channel: string, since: Position | null, done: (r: Recovery) => void): void {
    this.#mark(channel);
    const { ttl } = this.limits;
    this.#scripts
      .wsfpmHistRecoverBuffer(metaKey(channel), logKey(channel), this.newEpoch(), ttl, since ? since.offset : -1, since?.epoch ?? '', this.bus.bus, this.bus.histMessage(channel))
      .then(([epochBuf, top, raw]) => {
        const epoch = epochBuf.toString();
        const entries = raw.map(([id, fields]) => {
          const f = new Map<string, Buffer>();
          for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i]!.toString(), fields[i + 1]!);
          return { offset: Number(id.toString().split('-')[0]), at: Number(f.get('t')?.toString() ?? 0), data: f.get('d') ?? Buffer.alloc(0), binary: f.get('b')?.toString() === '1' };
        });
        done(recoverFrom(epoch, Number(top), entries, since, this.now() - ttl));
      })
      .catch(() => done({ epoch: UNAVAILABLE, offset: 0, entries: [], lost: since !== null }));
  }

  append(channel: string, data: Buffer, binary: boolean, excludeId: string | null, done: (p: Position | null) => void): void {
    const { size, ttl } = this.limits;
    this.#scripts
      .wsfpmHistAppend(metaKey(channel), logKey(channel), this.newEpoch(), size, data, binary ? '1' : '0', this.now(), ttl, this.bus.pubHeadPrefix(channel, binary, excludeId), this.bus.bus)
      .then(([offset, epoch]) => done({ epoch: String(epoch), offset: Number(offset) }))
      .catch(() => done(null));
  }

  /** Refreshes the keys' expiry and tells the other nodes, at most a few times per ttl. */
  touch(channel: string): void {
    const k = this.#kept.get(channel);
    if (k && this.now() - k.refreshed < Math.min(this.limits.ttl / 3, 10_000) / 2) return;
    this.#mark(channel);
    const { ttl } = this.limits;
    this.bus.redis.multi().pexpire(metaKey(channel), ttl).pexpire(logKey(channel), ttl).publish(this.bus.bus, this.bus.histMessage(channel)).exec().catch(() => {});
  }

  /** After (re)connecting: the channels other nodes keep history of, from the keys themselves. */
  async scan(): Promise<void> {
    let cursor = '0';
    do {
      const [next, keys] = await this.bus.redis.scan(cursor, 'MATCH', metaKey('*'), 'COUNT', 500);
      cursor = next;
      if (keys.length === 0) continue;
      const ttls = await Promise.all(keys.map((k) => this.bus.redis.pttl(k)));
      keys.forEach((key, i) => {
        if (ttls[i]! > 0) this.learned(key.slice(metaKey('').length), ttls[i]!);
      });
    } while (cursor !== '0');
  }

  #mark(channel: string): void {
    const now = this.now();
    const k = this.#kept.get(channel);
    if (k) {
      k.until = Math.max(k.until, now + this.limits.ttl);
      k.refreshed = now;
    } else this.#kept.set(channel, { until: now + this.limits.ttl, refreshed: now });
  }
}
