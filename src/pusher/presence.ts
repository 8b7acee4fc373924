/**
 * Who is on each presence channel: users (by user_id, with the user_info of
 * their first tab), each with the sockets that hold them there. A user is
 * added with their first socket and removed with their last, so two tabs
 * are one member and closing one of them changes nothing for the others.
 */

interface Entry {
  info: unknown;
  sockets: Set<string>;
}

export class Presence {
  readonly #channels = new Map<string, Map<string, Entry>>();

  /** True when this made the user a member (their first socket on the channel). */
  join(channel: string, socketId: string, userId: string, info: unknown): boolean {
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

  /** True when this removed the user (their last socket left). */
  leave(channel: string, socketId: string, userId: string): boolean {
    const users = this.#channels.get(channel);
    const entry = users?.get(userId);
    if (!users || !entry || !entry.sockets.delete(socketId)) return false;
    if (entry.sockets.size > 0) return false;
    users.delete(userId);
    if (users.size === 0) this.#channels.delete(channel);
    return true;
  }

  has(channel: string, userId: string): boolean {
    return this.#channels.get(channel)?.has(userId) ?? false;
  }

  count(channel: string): number {
    return this.#channels.get(channel)?.size ?? 0;
  }

  /** user_id → user_info, in the order they joined. */
  members(channel: string): Map<string, unknown> {
    return new Map([...(this.#channels.get(channel) ?? [])].map(([id, e]) => [id, e.info]));
  }
}
