/**
 * The hub between connections: who is connected, who listens on which
 * channel, and delivery to them. A bound PHP script sees only its own
 * connection; the hub is how it (and any page request, through the control
 * API) reaches the others.
 *
 * Delivery never blocks and never queues without bound: a member that cannot
 * keep up is closed by its own `deliver*` (1013), and the publisher is told
 * how many members the message reached.
 *
 * History (docs/protocol.md, "History and resume"): a FORWARD subscription
 * with HISTORY gets every message in an envelope with its offset and epoch,
 * and, when its client named a resume position for the channel, what it
 * missed first. Per such subscription, offsets only go up: a message the
 * recovery already delivered is not delivered again live, and live messages
 * that arrive while a (Redis) recovery is under way wait behind it.
 *
 * A channel message (or its envelope) is framed for the websocket once for
 * all the members that forward it (PreparedFrame, built by the first that
 * needs it).
 */
import { type HistoryStore, type Position } from './history.ts';
import { messageEnvelope, noticeEnvelope } from './envelope.ts';
import { PreparedFrame } from './prepared-frame.ts';


export interface Member {
  readonly id: string;
  readonly path: string;
  readonly ip: string;
  /** ms since the epoch. */
  readonly since: number;
  /**
   * A channel message, to PHP or (forward) straight to the client. `frame` is
   * the same message as one websocket frame shared by every member it goes to.
   * False if not delivered.
   */
  deliverChannel(channel: string, data: Buffer, binary: boolean, forward: boolean, frame: PreparedFrame): boolean;
  /** A message straight to this connection's client (`frame`: see deliverChannel). False if not delivered. */
  deliverDirect(data: Buffer, binary: boolean, frame?: PreparedFrame): boolean;
  close(code: number, reason: string): void;
  /** Positions the client named to resume from (`wsfpm_resume`), each used by the first history SUBSCRIBE of its channel. */
  readonly resume?: Map<string, Position>;
}

interface Subscription {
  forward: boolean;
  /** FORWARD with HISTORY: envelopes, offsets, recovery. */
  history: boolean;
  /** The last offset delivered (and its epoch), so nothing is delivered twice. */
  last: Position | null;
  /** Live messages held while the recovery runs; null once it is done. */
  pending: { position: Position | null; envelope: Buffer }[] | null;
}

/** Cross-node delivery and registry (Redis); the hub alone is one node. */
export interface Broker {
  publish(channel: string, data: Buffer, binary: boolean, excludeId: string | null): void;
  send(id: string, data: Buffer, binary: boolean): void;
  close(id: string, code: number, reason: string): void;
  added(id: string): void;
  removed(id: string, channels: string[]): void;
  joined(channel: string, id: string): void;
  left(channel: string, id: string): void;
  /** Members on every node; null when the broker cannot be asked. */
  members(channel: string): Promise<string[] | null>;
  /** Channels with a member on some node, starting with `prefix`; null when the broker cannot be asked. */
  channels(prefix: string): Promise<string[] | null>;
  /** The node holding a connection, or null. */
  nodeOf(id: string): Promise<string | null>;
}

export interface MemberInfo {
  id: string;
  path: string;
  ip: string;
  since: number;
  channels: string[];
}

export class Hub {
  readonly #members = new Map<string, { member: Member; channels: Map<string, Subscription> }>();
  readonly #channels = new Map<string, Set<string>>();
  broker: Broker | null = null;
  /** History subscriptions per channel, so a publish need not look at every subscriber. */
  readonly #historySubs = new Map<string, number>();
  /** Where channel history lives; null when --history-size is 0. */
  history: HistoryStore | null = null;

  constructor(private readonly maxChannelsPerMember: number) {}

  get size(): number {
    return this.#members.size;
  }

  add(member: Member): void {
    this.#members.set(member.id, { member, channels: new Map() });
    this.broker?.added(member.id);
  }

  remove(id: string): void {
    const entry = this.#members.get(id);
    if (!entry) return;
    for (const [channel, sub] of entry.channels) {
      if (sub.history) this.#countHistory(channel, -1);
      this.#leave(channel, id);
    }
    this.#members.delete(id);
    this.broker?.removed(id, [...entry.channels.keys()]);
  }

  /** False when the member already holds the maximum number of subscriptions. */
  subscribe(id: string, channel: string, forward: boolean, history = false): boolean {
    const entry = this.#members.get(id);
    if (!entry) return false;
    if (!entry.channels.has(channel) && entry.channels.size >= this.maxChannelsPerMember) return false;
    const withHistory = history && forward && this.history !== null;
    const before = entry.channels.get(channel);
    // A repeated history SUBSCRIBE keeps its place in the channel: a new recovery would replay from the start.
    const fresh = before?.history && withHistory ? null : { forward, history: withHistory, last: null, pending: withHistory ? [] : null };
    if (fresh) {
      if (before?.history) this.#countHistory(channel, -1);
      if (fresh.history) this.#countHistory(channel, 1);
      entry.channels.set(channel, fresh);
    }
    let set = this.#channels.get(channel);
    if (!set) this.#channels.set(channel, (set = new Set()));
    set.add(id);
    this.broker?.joined(channel, id);
    if (fresh?.history) this.#recover(entry.member, channel, fresh);
    return true;
  }

  unsubscribe(id: string, channel: string): void {
    const channels = this.#members.get(id)?.channels;
    const sub = channels?.get(channel);
    if (!channels || !sub) return;
    channels.delete(channel);
    if (sub.history) this.#countHistory(channel, -1);
    this.#leave(channel, id);
    this.broker?.left(channel, id);
  }

  /**
   * Delivers to this node's subscribers and hands the message to the broker for the others.
   * A channel that keeps history first gets the message's offset from the store (with Redis,
   * which carries it to the other nodes too); the count is then of the members it will reach.
   */
  publish(channel: string, data: Buffer, binary: boolean, excludeId: string | null = null): number {
    const store = this.history;
    if (store && this.#historySubscribers(channel)) store.touch(channel);
    if (!store?.keeps(channel)) {
      this.broker?.publish(channel, data, binary, excludeId);
      return this.publishLocal(channel, data, binary, excludeId);
    }
    store.append(channel, data, binary, excludeId, (position) => {
      // Unrecorded (Redis unreachable): this node's subscribers still get it, without an offset.
      this.publishLocal(channel, data, binary, excludeId, position);
    });
    return [...(this.#channels.get(channel) ?? [])].filter((id) => id !== excludeId).length;
  }

  publishLocal(channel: string, data: Buffer, binary: boolean, excludeId: string | null, position: Position | null = null): number {
    const ids = this.#channels.get(channel);
    if (!ids) return 0;
    let reached = 0;
    let envelope: Buffer | null = null;
    let envelopeFrame: PreparedFrame | null = null;
    const frame = new PreparedFrame(data, binary);
    // No snapshot needed: a member a delivery closes leaves the set later, on its close event
    // (and a Set skips entries deleted while it is iterated anyway).
    for (const id of ids) {
      if (id === excludeId) continue;
      const entry = this.#members.get(id);
      const sub = entry?.channels.get(channel);
      if (!entry || !sub) continue;
      if (!sub.history) {
        if (entry.member.deliverChannel(channel, data, binary, sub.forward, frame)) reached++;
        continue;
      }
      envelope ??= messageEnvelope(channel, position, data, binary);
      if (sub.pending) {
        sub.pending.push({ position, envelope });
        reached++;
      } else if (this.#deliverHistoric(entry.member, sub, position, envelope, (envelopeFrame ??= new PreparedFrame(envelope, false)))) reached++;
    }
    return reached;
  }

  /** One envelope to a history subscription, unless its offset was delivered already. */
  #deliverHistoric(member: Member, sub: Subscription, position: Position | null, envelope: Buffer, frame?: PreparedFrame): boolean {
    if (position && sub.last && position.epoch === sub.last.epoch && position.offset <= sub.last.offset) return false;
    if (position) sub.last = position;
    return member.deliverDirect(envelope, false, frame);
  }

  /** Starts a history subscription: what its client missed (or lost), then the live messages that waited. */
  #recover(member: Member, channel: string, sub: Subscription): void {
    const since = member.resume?.get(channel) ?? null;
    member.resume?.delete(channel);
    this.history!.recover(channel, since, (r) => {
      // Unsubscribed, resubscribed or gone while Redis answered: that subscription's own recovery decides.
      if (this.#members.get(member.id)?.channels.get(channel) !== sub) return;
      const top = { epoch: r.epoch, offset: r.offset };
      if (since && !r.lost) {
        for (const e of r.entries) this.#deliverHistoric(member, sub, { epoch: r.epoch, offset: e.offset }, messageEnvelope(channel, { epoch: r.epoch, offset: e.offset }, e.data, e.binary));
        sub.last = top;
        member.deliverDirect(noticeEnvelope('recovered', channel, top, r.entries.length), false);
      } else {
        sub.last = top;
        member.deliverDirect(noticeEnvelope(since ? 'lost' : 'subscribed', channel, top), false);
      }
      const waiting = sub.pending ?? [];
      sub.pending = null;
      for (const w of waiting) this.#deliverHistoric(member, sub, w.position, w.envelope);
    });
  }

  #historySubscribers(channel: string): boolean {
    return this.#historySubs.has(channel);
  }

  /** The last history subscription leaving starts the store's ttl from now. */
  #countHistory(channel: string, delta: number): void {
    const n = (this.#historySubs.get(channel) ?? 0) + delta;
    if (n > 0) return void this.#historySubs.set(channel, n);
    this.#historySubs.delete(channel);
    this.history?.touch(channel);
  }

  /** Keeps the history of channels that still have a history subscription here (the store's ttl counts from the last one). */
  touchHistory(): void {
    if (!this.history) return;
    for (const channel of this.#historySubs.keys()) this.history.touch(channel);
  }

  /** To a connection here, or (fire and forget) through the broker to the node holding it. */
  send(id: string, data: Buffer, binary: boolean): void {
    if (this.sendLocal(id, data, binary) === 0) this.broker?.send(id, data, binary);
  }

  sendLocal(id: string, data: Buffer, binary: boolean): number {
    const entry = this.#members.get(id);
    return entry && entry.member.deliverDirect(data, binary) ? 1 : 0;
  }

  closeLocal(id: string, code: number, reason: string): number {
    const entry = this.#members.get(id);
    if (!entry) return 0;
    entry.member.close(code, reason);
    return 1;
  }

  /** For the control API: publish and count the members reached on every node. */
  async publishCounted(channel: string, data: Buffer, binary: boolean, excludeId: string | null): Promise<number> {
    const local = this.publish(channel, data, binary, excludeId);
    if (!this.broker) return local;
    const all = await this.broker.members(channel);
    const remote = (all ?? []).filter((id) => !this.#members.has(id) && id !== excludeId).length;
    return local + remote;
  }

  /** For the control API: a send to a connection on any node; 1 if it exists. */
  async sendCounted(id: string, data: Buffer, binary: boolean): Promise<number> {
    if (this.#members.has(id)) return this.sendLocal(id, data, binary);
    if (!this.broker || !(await this.broker.nodeOf(id))) return 0;
    this.broker.send(id, data, binary);
    return 1;
  }

  async closeCounted(id: string, code: number, reason: string): Promise<number> {
    if (this.#members.has(id)) return this.closeLocal(id, code, reason);
    if (!this.broker || !(await this.broker.nodeOf(id))) return 0;
    this.broker.close(id, code, reason);
    return 1;
  }

  /** Presence across nodes (this node's only, when the broker cannot be asked). */
  async membersEverywhere(channel: string): Promise<string[]> {
    return (await this.broker?.members(channel)) ?? this.members(channel);
  }

  /** The channels a member is subscribed to (none for an unknown id). */
  channelsOf(id: string): Iterable<string> {
    return this.#members.get(id)?.channels.keys() ?? [];
  }

  has(id: string): boolean {
    return this.#members.has(id);
  }

  members(channel: string): string[] {
    return [...(this.#channels.get(channel) ?? [])];
  }

  /** Channels with a subscriber on any node (this node's only, when the broker cannot be asked). */
  async channelsEverywhere(prefix: string): Promise<string[]> {
    const all = await this.broker?.channels(prefix);
    return all ?? [...this.#channels.keys()].filter((c) => c.startsWith(prefix));
  }

  list(): MemberInfo[] {
    return [...this.#members.values()].map(({ member, channels }) => ({ id: member.id, path: member.path, ip: member.ip, since: member.since, channels: [...channels.keys()] }));
  }

  #leave(channel: string, id: string): void {
    const set = this.#channels.get(channel);
    if (!set) return;
    set.delete(id);
    if (set.size === 0) this.#channels.delete(channel);
  }
}
