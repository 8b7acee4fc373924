/**
 * Presence shared by every node through the broker's Redis, so the member
 * list, member_added/member_removed and the HTTP API's users are the same
 * on every node, and a user's last tab leaving on any node is what removes
 * them.
 *
 *   wsfpm:presence:<channel>            hash user_id → user_info (JSON, of their first tab)
 *   wsfpm:presence:<channel>|<user_id>  set of "node|socket_id" holding that user there
 *
 * A join or leave is one Lua script, so two tabs joining (or leaving) at
 * once on two nodes cannot both be first (or last). Sockets of a node that
 * stopped refreshing its heartbeat (it crashed) are dropped when a list is
 * next read, and a user left with none is removed then, with the
 * member_removed the node could not send itself.
 *
 * Redis down: the answers come from this node's own presence, which is
 * always kept too, and the lists are this node's until Redis is back.
 */
import { type RedisBroker } from '../hub/redis-broker.ts';
import { type Log } from '../log.ts';
import { type Presence, type PresenceStore } from './presence.ts';

const users = (channel: string): string => `wsfpm:presence:${channel}`;
// `|` is not a channel name character, so no channel's key can collide with another's user key.
const sockets = (channel: string, userId: string): string => `wsfpm:presence:${channel}|${userId}`;

const JOIN = `redis.call('SADD', KEYS[2], ARGV[3])
return redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])`;

/** ARGV[2] may be empty: then only "is the user's set empty" is checked (a crashed node's leftovers). */
const LEAVE = `if ARGV[2] ~= '' then redis.call('SREM', KEYS[2], ARGV[2]) end
if redis.call('SCARD', KEYS[2]) == 0 then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0`;

export class RedisPresence implements PresenceStore {
  #outage = false;

  constructor(
    private readonly broker: RedisBroker,
    private readonly local: Presence,
    private readonly log: Log,
    /** A user removed because the node holding their sockets is gone: tell the channel. */
    private readonly onVanished: (channel: string, userId: string) => void,
  ) {}

  async join(channel: string, socketId: string, userId: string, info: unknown): Promise<boolean> {
    const here = this.local.joinNow(channel, socketId, userId, info);
    try {
      return (await this.broker.redis.eval(JOIN, 2, users(channel), sockets(channel, userId), userId, JSON.stringify(info), `${this.broker.node}|${socketId}`)) === 1;
    } catch (err) {
      return this.#down(err, here);
    }
  }

  async leave(channel: string, socketId: string, userId: string): Promise<boolean> {
    const here = this.local.leaveNow(channel, socketId, userId);
    try {
      return (await this.broker.redis.eval(LEAVE, 2, users(channel), sockets(channel, userId), userId, `${this.broker.node}|${socketId}`)) === 1;
    } catch (err) {
      return this.#down(err, here);
    }
  }

  async members(channel: string): Promise<Map<string, unknown>> {
    try {
      const redis = this.broker.redis;
      const all = await redis.hgetall(users(channel));
      const ids = Object.keys(all);
      const held = await Promise.all(ids.map((id) => redis.smembers(sockets(channel, id))));
      const live = await this.broker.liveNodes(held.flat().map((e) => e.split('|')[0]!));
      const result = new Map<string, unknown>();
      for (const [i, id] of ids.entries()) {
        const dead = held[i]!.filter((e) => !live.has(e.split('|')[0]!));
        if (dead.length > 0) await redis.srem(sockets(channel, id), ...dead);
        if (dead.length === held[i]!.length && (await redis.eval(LEAVE, 2, users(channel), sockets(channel, id), id, '')) === 1) {
          this.onVanished(channel, id);
          continue;
        }
        result.set(id, parseInfo(all[id]!));
      }
      this.#outage = false;
      return result;
    } catch (err) {
      return this.#down(err, this.local.membersNow(channel));
    }
  }

  #down<T>(err: unknown, fallback: T): T {
    if (!this.#outage) this.log.error({ code: 'WSFPM_ERR_BROKER_DOWN', detail: (err as Error).message }, 'Redis unreachable; presence lists are this node\'s until it is back');
    this.#outage = true;
    return fallback;
  }
}

function parseInfo(json: string): unknown {
  try {
    return JSON.parse(json);
  } catch {
    return null;
  }
}
