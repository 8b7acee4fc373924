/**
 * Who is on each presence channel: users (by user_id, with the user_info of
 * their first tab), each with the sockets that hold them there. A user is
 * added with their first socket and removed with their last, so two tabs
 * are one member and closing one of them changes nothing for the others.
 *
 * The store is asynchronous because with --redis it is shared by every node
 * (presence-redis.ts). Each call's change is made when it is called, before
 * its promise settles, so a leave issued after a join is applied after it.
 */

export interface PresenceStore {
  /** True when this made the user a member (their first socket on the channel). */
  join(channel: string, socketId: string, userId: string, info: unknown): Promise<boolean>;
  /** True when this removed the user (their last socket left). */
  leave(channel: string, socketId: string, userId: string): Promise<boolean>;
  /** user_id → user_info. */
  members(channel: string): Promise<Map<string, unknown>>;
}

interface Entry {
  info: unknown;
  sockets: Set<string>;
}

/** One node's presence, in memory. */
export class Presence implements PresenceStore {
  readonly #channels = new Map<string, Map<string, Entry>>();

  joinNow(channel: string, socketId: string, userId: string, info: unknown): boolean {
    let users = this.#channels.get(channel);
    if (!users) this.#channels.set(channel, (users = new Map()));
    const entry = users.get(userId);
    if (entry) {
      entry.sockets.add(socketId);
      return false;
    }
    users.set(userId, { info, sockets: new Set([socketId]) });
    return true;
  }

  leaveNow(channel: string, socketId: string, userId: string): boolean {
    const users = this.#channels.get(channel);
    const entry = users?.get(userId);
    if (!users || !entry || !entry.sockets.delete(socketId)) return false;
    if (entry.sockets.size > 0) return false;
    users.delete(userId);
    if (users.size === 0) this.#channels.delete(channel);
    return true;
  }

  /** In the order they joined. */
  membersNow(channel: string): Map<string, unknown> {
    return new Map([...(this.#channels.get(channel) ?? [])].map(([id, e]) => [id, e.info]));
  }

  async join(channel: string, socketId: string, userId: string, info: unknown): Promise<boolean> {
    return this.joinNow(channel, socketId, userId, info);
  }

  async leave(channel: string, socketId: string, userId: string): Promise<boolean> {
    return this.leaveNow(channel, socketId, userId);
  }

  async members(channel: string): Promise<Map<string, unknown>> {
    return this.membersNow(channel);
  }
}
