/**
 * Channel history: a bounded ring of a channel's last messages, each with
 * its offset (1, 2, 3… per channel), under an epoch that names this copy of
 * the history. A client that names the epoch and the last offset it saw gets
 * exactly what it missed, or is told that it cannot (the epoch changed: the
 * history was lost; or its offset fell out of the ring's size or age).
 *
 * Pure: the clock and the epoch generator are passed in, so the ring's rules
 * are tested without timers. The hub owns when a channel keeps history.
 */

export interface Position {
  epoch: string;
  offset: number;
}

export interface Entry {
  offset: number;
  /** ms since the epoch when it was published: entries older than the ttl count as gone. */
  at: number;
  data: Buffer;
  binary: boolean;
}

/** What a subscription asking to resume gets: the entries after its offset, or lost. */
export interface Recovery {
  epoch: string;
  /** The channel's last offset (0: nothing published yet). */
  offset: number;
  entries: Entry[];
  /** The history cannot fill the gap (epoch changed, offset too old or ahead of the channel). */
  lost: boolean;
}

/** Entries `since` is missing, in order, out of entries that are in offset order; lost when they do not start right after it. */
export function recoverFrom(epoch: string, top: number, entries: readonly Entry[], since: Position | null, oldest: number): Recovery {
  if (!since) return { epoch, offset: top, entries: [], lost: false };
  if (since.epoch !== epoch || since.offset > top) return { epoch, offset: top, entries: [], lost: true };
  const missed = entries.filter((e) => e.offset > since.offset && e.at >= oldest);
  const complete = since.offset === top || (missed.length > 0 && missed[0]!.offset === since.offset + 1 && missed.length === top - since.offset);
  return complete ? { epoch, offset: top, entries: missed, lost: false } : { epoch, offset: top, entries: [], lost: true };
}

export class HistoryRing {
  readonly #entries: (Entry | undefined)[];
  #start = 0;
  #count = 0;
  top = 0;

  constructor(readonly epoch: string, readonly size: number) {
    this.#entries = new Array<Entry | undefined>(size);
  }

  append(data: Buffer, binary: boolean, at: number): Entry {
    // Copied: the data is often a view into a socket chunk that would otherwise stay alive with it.
    const entry: Entry = { offset: ++this.top, at, data: Buffer.from(data), binary };
    const slot = (this.#start + this.#count) % this.size;
    this.#entries[slot] = entry;
    if (this.#count < this.size) this.#count++;
    else this.#start = (this.#start + 1) % this.size;
    return entry;
  }

  /** Entries in offset order. */
  entries(): Entry[] {
    const out: Entry[] = [];
    for (let i = 0; i < this.#count; i++) out.push(this.#entries[(this.#start + i) % this.size]!);
    return out;
  }

  /** Drops entries published before `oldest`. */
  expire(oldest: number): void {
    while (this.#count > 0 && this.#entries[this.#start]!.at < oldest) {
      this.#entries[this.#start] = undefined;
      this.#start = (this.#start + 1) % this.size;
      this.#count--;
    }
  }

  get length(): number {
    return this.#count;
  }

  /** ms of the newest entry, or -Infinity. */
  get newest(): number {
    return this.#count === 0 ? -Infinity : this.#entries[(this.#start + this.#count - 1) % this.size]!.at;
  }
}

/**
 * Where history lives: this node's memory, or Redis shared by every node.
 * `done` callbacks may run at once (memory) or later (Redis), but always in
 * the order of the calls for one channel.
 */
export interface HistoryStore {
  /** The channel keeps history (a subscription asked for it, here or on another node, within the ttl). */
  keeps(channel: string): boolean;
  /** Marks the channel as keeping history and answers what `since` missed. */
  recover(channel: string, since: Position | null, done: (r: Recovery) => void): void;
  /** Records a publish; `done` gets its position, or null when it could not be recorded. Redis also carries it to the other nodes. */
  append(channel: string, data: Buffer, binary: boolean, excludeId: string | null, done: (p: Position | null) => void): void;
  /** A history subscription is still here: keep the channel's history alive. */
  touch(channel: string): void;
}

export interface HistoryLimits {
  /** Messages kept per channel. */
  size: number;
  /** ms a message is kept; also how long a channel keeps history after its last history subscription. */
  ttl: number;
  /** Channels kept at once in memory (Redis keeps its own, bounded by the ttl); absent: no bound. */
  channels?: number;
}

/** This node's history: lost with the process (a restart changes every epoch). */
export class MemoryHistory implements HistoryStore {
  readonly #rings = new Map<string, { ring: HistoryRing; until: number }>();
  #evicted = 0;

  constructor(
    private readonly limits: HistoryLimits,
    private readonly newEpoch: () => string,
    private readonly now: () => number = Date.now,
  ) {}

  keeps(channel: string): boolean {
    return this.#live(channel) !== null;
  }

  recover(channel: string, since: Position | null, done: (r: Recovery) => void): void {
    const now = this.now();
    let held = this.#live(channel);
    if (!held) {
      this.#makeRoom();
      held = { ring: new HistoryRing(this.newEpoch(), this.limits.size), until: 0 };
    }
    this.#use(channel, held);
    held.until = now + this.limits.ttl;
    held.ring.expire(now - this.limits.ttl);
    done(recoverFrom(held.ring.epoch, held.ring.top, held.ring.entries(), since, now - this.limits.ttl));
  }

  append(channel: string, data: Buffer, binary: boolean, _excludeId: string | null, done: (p: Position | null) => void): void {
    const held = this.#live(channel);
    if (!held) return done(null);
    const now = this.now();
    held.ring.expire(now - this.limits.ttl);
    const entry = held.ring.append(data, binary, now);
    this.#use(channel, held);
    held.until = Math.max(held.until, now + this.limits.ttl);
    done({ epoch: held.ring.epoch, offset: entry.offset });
  }

  touch(channel: string): void {
    const held = this.#rings.get(channel);
    if (held) held.until = Math.max(held.until, this.now() + this.limits.ttl);
  }

  /** Forgets channels whose ttl passed with no history subscription and no publish; the hub calls it now and then. */
  sweep(): void {
    const now = this.now();
    for (const [channel, held] of this.#rings) if (held.until <= now) this.#rings.delete(channel);
  }

  get channels(): number {
    return this.#rings.size;
  }

  /** Channels forgotten to stay within `limits.channels`. */
  get evicted(): number {
    return this.#evicted;
  }

  /** Moves the channel to the end of the map, which is thus in order of last use. */
  #use(channel: string, held: { ring: HistoryRing; until: number }): void {
    this.#rings.delete(channel);
    this.#rings.set(channel, held);
  }

  /** Before a new channel: expired ones go first, then the least recently used (its clients resume as lost: a new epoch). */
  #makeRoom(): void {
    const cap = this.limits.channels ?? Infinity;
    if (this.#rings.size < cap) return;
    this.sweep();
    for (const channel of this.#rings.keys()) {
      if (this.#rings.size < cap) break;
      this.#rings.delete(channel);
      this.#evicted++;
    }
  }

  #live(channel: string): { ring: HistoryRing; until: number } | null {
    const held = this.#rings.get(channel);
    if (!held) return null;
    if (held.until > this.now()) return held;
    this.#rings.delete(channel);
    return null;
  }
}
