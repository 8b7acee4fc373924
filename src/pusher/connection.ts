/**
 * One pusher-js / laravel-echo connection (protocol 7) as a hub Member: its
 * subscriptions are hub subscriptions under the same channel names, so
 * whatever a bound PHP script, the control API or the HTTP API publishes
 * on a channel reaches it, and its client events reach them.
 *
 * Nothing a client sends can throw out of here: a message that is not
 * understood or not allowed gets a `pusher:error` (or, for a subscription,
 * `pusher:subscription_error`) and one log line, and the socket stays open;
 * only the 4000–4099 refusals at connect time close it.
 */
import { randomInt } from 'node:crypto';
import type { WebSocket, RawData } from 'ws';
import { type Hub, type Member } from '../hub/hub.ts';
import { isChannelName } from '../protocol/channel-frames.ts';
import { ERRORS, type ErrorCode } from '../errors.ts';
import { PUSHER } from '../defaults.ts';
import { TokenBucket } from '../token-bucket.ts';
import { keepAlive } from '../bridge/keepalive.ts';
import { type Log } from '../log.ts';
import { type PusherApp } from './apps.ts';
import { validChannelAuth, validSigninAuth } from './signatures.ts';
import { type PresenceStore } from './presence.ts';
import { type Webhooks } from './webhooks.ts';
import {
  channelKind, connectionEstablished, hubEnvelope, isUserChannel, isUserId, memberAdded, memberRemoved, parseClientMessage, pong, pusherError, pusherFrame, signinSuccess,
  subscriptionError, subscriptionSucceeded, userChannel,
  type ClientMessage,
} from './messages.ts';

export interface PusherSettings {
  highWater: number;
  pingInterval: number;
  /** Messages per second of any kind; over it: close 1008 as for bound connections. 0 disables. */
  messageRate: number;
}

/** Counts for metrics; the Pusher face knows nothing of how they are exported. */
export interface PusherObserver {
  /** A refusal: a connection, message, subscription or API request, by its WSFPM_ERR_* code. */
  refused(code: string): void;
  published(source: 'api' | 'client'): void;
}

export interface PusherContext {
  hub: Hub;
  observer: PusherObserver;
  presence: PresenceStore;
  webhooks: Webhooks;
  log: Log;
}

/** Pusher's socket ids are two integers; unique among this node's hub members. */
export function newSocketId(hub: Hub): string {
  for (;;) {
    const id = `${randomInt(1, 2 ** 31)}.${randomInt(1, 2 ** 31)}`;
    if (!hub.has(id)) return id;
  }
}

/** Refuses a connection the protocol's way: the error event, then a close with the same code. */
export function refuseConnection(ws: WebSocket, code: ErrorCode, detail: string, log: Log, observer: PusherObserver): void {
  const spec = ERRORS[code];
  observer.refused(code);
  log.info({ code, detail, close: spec.close }, 'pusher connection refused');
  ws.send(pusherError(spec.close, spec.message));
  ws.close(spec.close, spec.message);
}

export interface PusherHandle {
  /**
   * Leaves every channel now (the daemon is stopping), so the presence
   * leaves and their member_removed reach Redis before the broker
   * disconnects instead of being lost with a close event that comes later.
   */
  leaveAll(): Promise<void>;
}

export function servePusher(ws: WebSocket, app: PusherApp, who: { ip: string }, settings: PusherSettings, ctx: PusherContext, onClosed: () => void): PusherHandle {
  const { hub, presence, webhooks, observer } = ctx;
  const socketId = newSocketId(hub);
  const log = ctx.log.child({ socket: socketId, app: app.id });
  const started = Date.now();
  /** channel → the user_id this socket holds there (presence), or null. */
  const subscriptions = new Map<string, string | null>();
  const messages = settings.messageRate > 0 ? new TokenBucket(settings.messageRate) : null;
  const clientEvents = app.clientEventRate > 0 ? new TokenBucket(app.clientEventRate) : null;
  let closed = false;
  /** The user this socket signed in as (pusher:signin), or null. */
  let signedIn: string | null = null;

  const send = (text: string): void => {
    if (!closed) ws.send(text);
  };
  const fail = (code: ErrorCode, detail: string): void => {
    observer.refused(code);
    log.info({ code, detail }, 'pusher message refused');
    send(pusherError(ERRORS[code].close, ERRORS[code].message));
  };
  const refuseSubscription = (channel: string, type: string, error: string, status: number): void => {
    const code = status === 401 ? 'WSFPM_ERR_PUSHER_UNAUTHORIZED' : 'WSFPM_ERR_PUSHER_REQUEST';
    observer.refused(code);
    log.info({ code, channel, detail: error }, 'pusher subscription refused');
    send(subscriptionError(channel, type, error, status));
  };

  /** Hub deliveries: text frames (the protocol is JSON text), never queued past highWater. */
  const deliver = (text: string | Buffer): boolean => {
    if (closed) return false;
    if (ws.bufferedAmount > settings.highWater) {
      observer.refused('WSFPM_ERR_SLOW_CONSUMER');
      log.warn({ code: 'WSFPM_ERR_SLOW_CONSUMER', detail: `more than ${settings.highWater} bytes queued toward the client` }, 'connection failed');
      member.close(ERRORS.WSFPM_ERR_SLOW_CONSUMER.close, ERRORS.WSFPM_ERR_SLOW_CONSUMER.message);
      return false;
    }
    ws.send(text, { binary: false });
    return true;
  };

  const member: Member = {
    id: socketId,
    path: `/app/${app.key}`,
    ip: who.ip,
    since: started,
    deliverChannel(channel, data, binary) {
      const frame = pusherFrame(channel, data, binary);
      return frame !== null && deliver(frame);
    },
    deliverDirect: (data, binary) => !binary && deliver(data),
    close(code, reason) {
      if (!closed) ws.close(code, reason);
      closed = true;
    },
  };
  hub.add(member);
  log.info({ ip: who.ip }, 'pusher connection open');
  ws.send(connectionEstablished(socketId, PUSHER.activityTimeout));

  function subscribe(m: Extract<ClientMessage, { kind: 'subscribe' }>): void {
    const { channel } = m;
    if (isUserChannel(channel)) {
      if (signedIn === null || channel !== userChannel(signedIn)) return refuseSubscription(channel, 'AuthError', 'a #server-to-user- channel is for the socket signed in as that user', 401);
      if (!subscriptions.has(channel) && !hub.subscribe(socketId, channel, true)) return refuseSubscription(channel, 'LimitReached', 'over the limit of channels per connection', 4004);
      subscriptions.set(channel, null);
      return send(subscriptionSucceeded(channel));
    }
    if (!isChannelName(channel)) return refuseSubscription(channel.slice(0, 200), 'InvalidChannel', 'channel names are 1–128 of A–Z a–z 0–9 _ - = @ , . ; : /', 400);
    const kind = channelKind(channel);
    if (subscriptions.has(channel)) {
      if (kind !== 'presence') send(subscriptionSucceeded(channel));
      else void presence.members(channel).then((members) => send(subscriptionSucceeded(channel, presenceList(members))));
      return;
    }
    let user: { id: string; info: unknown } | null = null;
    if (kind !== 'public') {
      const channelData = kind === 'presence' ? m.channelData : undefined;
      if (kind === 'presence' && typeof channelData !== 'string') return refuseSubscription(channel, 'AuthError', 'a presence channel needs channel_data', 401);
      if (!validChannelAuth(app, socketId, channel, m.auth, channelData as string | undefined)) return refuseSubscription(channel, 'AuthError', 'invalid signature', 401);
      if (kind === 'presence') {
        user = parseUser(channelData as string);
        if (!user) return refuseSubscription(channel, 'AuthError', `channel_data must be JSON with a user_id, at most ${PUSHER.maxUserData} bytes`, 401);
      }
    }
    if (!hub.subscribe(socketId, channel, true)) return refuseSubscription(channel, 'LimitReached', 'over the limit of channels per connection', 4004);
    subscriptions.set(channel, user?.id ?? null);
    occupancy(channel, 1);
    if (!user) return send(subscriptionSucceeded(channel));
    void joinPresence(channel, user);
  }

  /**
   * The subscription is already held (a leave from an unsubscribe or a close
   * is issued after this join, so it is applied after it); what is awaited
   * is the member list, from every node with --redis.
   */
  async function joinPresence(channel: string, user: { id: string; info: unknown }): Promise<void> {
    const added = await presence.join(channel, socketId, user.id, user.info);
    const members = await presence.members(channel);
    if (subscriptions.get(channel) !== user.id) return;
    if (added && members.size > PUSHER.maxPresenceMembers) {
      void unsubscribe(channel);
      return refuseSubscription(channel, 'LimitReached', `a presence channel holds at most ${PUSHER.maxPresenceMembers} users`, 4004);
    }
    send(subscriptionSucceeded(channel, presenceList(members)));
    if (!added) return;
    hub.publish(channel, memberAdded(user.id, user.info), false, socketId);
    webhooks.send(app, { name: 'member_added', channel, user_id: user.id });
  }

  /**
   * channel_occupied (the channel's first subscriber, `after` 1) and
   * channel_vacated (its last left, `after` 0) for the app's webhook,
   * counting the subscribers on every node once this change is made. Two
   * nodes changing one channel at the same moment may both see the other's
   * change: then the event is missed, never sent twice.
   */
  function occupancy(channel: string, after: 0 | 1): void {
    if (!app.webhook) return;
    void hub.membersEverywhere(channel).then((members) => {
      if (members.length === after) webhooks.send(app, { name: after === 1 ? 'channel_occupied' : 'channel_vacated', channel });
    });
  }

  const presenceList = (members: Map<string, unknown>) => ({ ids: [...members.keys()], hash: Object.fromEntries(members), count: members.size });

  /** Settles once a presence leave is applied and its member_removed handed to the hub. */
  function unsubscribe(channel: string): Promise<void> {
    if (!subscriptions.has(channel)) return Promise.resolve();
    const userId = subscriptions.get(channel);
    subscriptions.delete(channel);
    hub.unsubscribe(socketId, channel);
    occupancy(channel, 0);
    if (userId == null) return Promise.resolve();
    return presence.leave(channel, socketId, userId).then((removed) => {
      if (!removed) return;
      hub.publish(channel, memberRemoved(userId), false, socketId);
      webhooks.send(app, { name: 'member_removed', channel, user_id: userId });
    });
  }

  const leaveAll = async (): Promise<void> => {
    await Promise.all([...subscriptions.keys()].map(unsubscribe));
  };

  function clientEvent(m: Extract<ClientMessage, { kind: 'client-event' }>): void {
    if (!clientEvents) return fail('WSFPM_ERR_PUSHER_CLIENT_EVENT', `client events are off for app ${app.id} (--pusher-apps ID:KEY:SECRET:client-events)`);
    if (channelKind(m.channel) === 'public') return fail('WSFPM_ERR_PUSHER_CLIENT_EVENT', 'client events go on private- and presence- channels only');
    if (!subscriptions.has(m.channel)) return fail('WSFPM_ERR_PUSHER_UNAUTHORIZED', `not a member of ${m.channel.slice(0, 200)}`);
    if (m.event.length > PUSHER.maxEventName) return fail('WSFPM_ERR_PUSHER_CLIENT_EVENT', `event name over ${PUSHER.maxEventName} characters`);
    const size = Buffer.byteLength(JSON.stringify(m.data));
    if (size > PUSHER.maxEventData) return fail('WSFPM_ERR_PUSHER_CLIENT_EVENT', `data of ${size} bytes is over ${PUSHER.maxEventData}`);
    if (!clientEvents.take()) return fail('WSFPM_ERR_PUSHER_CLIENT_EVENT_RATE', `over ${app.clientEventRate} client events per second`);
    const userId = subscriptions.get(m.channel) ?? undefined;
    hub.publish(m.channel, hubEnvelope(m.event, m.data, userId), false, socketId);
    observer.published('client');
    webhooks.send(app, { name: 'client_event', channel: m.channel, event: m.event, data: typeof m.data === 'string' ? m.data : JSON.stringify(m.data), socket_id: socketId, ...(userId ? { user_id: userId } : {}) });
  }

  // pusher-js pings at the protocol level only after activity_timeout; these find dead peers sooner, as for bound connections.
  const pings = keepAlive(ws, settings.pingInterval, log);
  /** User authentication: a signature over socket_id::user::user_data from the site's /broadcasting/user-auth. */
  function signin(m: Extract<ClientMessage, { kind: 'signin' }>): void {
    const userData = typeof m.userData === 'string' && Buffer.byteLength(m.userData) <= PUSHER.maxUserData ? m.userData : null;
    const id = userData === null ? null : userIdOf(userData);
    if (userData === null || !validSigninAuth(app, socketId, userData, m.auth) || id === null) {
      observer.refused('WSFPM_ERR_PUSHER_UNAUTHORIZED');
      log.info({ code: 'WSFPM_ERR_PUSHER_UNAUTHORIZED', detail: 'pusher:signin with an invalid signature or user_data' }, 'connection failed');
      send(pusherError(ERRORS.WSFPM_ERR_PUSHER_UNAUTHORIZED.close, ERRORS.WSFPM_ERR_PUSHER_UNAUTHORIZED.message));
      return member.close(ERRORS.WSFPM_ERR_PUSHER_UNAUTHORIZED.close, ERRORS.WSFPM_ERR_PUSHER_UNAUTHORIZED.message);
    }
    if (signedIn !== null && signedIn !== id) void unsubscribe(userChannel(signedIn));
    signedIn = id;
    send(signinSuccess(userData));
  }

  ws.on('message', (data: RawData, isBinary: boolean) => {
    pings.seen();
    if (closed) return;
    if (messages && !messages.take()) {
      observer.refused('WSFPM_ERR_RATE_LIMIT');
      log.info({ code: 'WSFPM_ERR_RATE_LIMIT', detail: `over ${settings.messageRate} messages per second` }, 'connection failed');
      member.close(ERRORS.WSFPM_ERR_RATE_LIMIT.close, ERRORS.WSFPM_ERR_RATE_LIMIT.message);
      return;
    }
    if (isBinary) return fail('WSFPM_ERR_PUSHER_BAD_MESSAGE', 'a binary message (the protocol is JSON text)');
    const m = parseClientMessage((data as Buffer).toString('utf8'));
    switch (m.kind) {
      case 'ping':
        return send(pong());
      case 'pong':
        return;
      case 'subscribe':
        return subscribe(m);
      case 'unsubscribe':
        return void unsubscribe(m.channel);
      case 'client-event':
        return clientEvent(m);
      case 'signin':
        return signin(m);
      case 'bad':
        return fail('WSFPM_ERR_PUSHER_BAD_MESSAGE', m.why);
    }
  });

  ws.on('close', (code: number) => {
    closed = true;
    pings.stop();
    void leaveAll();
    hub.remove(socketId);
    log.info({ code, durationMs: Date.now() - started }, 'pusher connection closed');
    onClosed();
  });
  return { leaveAll };
}

/** The id of signin user_data (a JSON object with a string id, as pusher-js requires), or null. */
function userIdOf(userData: string): string | null {
  try {
    const v = JSON.parse(userData) as { id?: unknown } | null;
    return typeof v?.id === 'string' && isUserId(v.id) ? v.id : null;
  } catch {
    return null;
  }
}

function parseUser(channelData: string): { id: string; info: unknown } | null {
  if (Buffer.byteLength(channelData) > PUSHER.maxUserData) return null;
  let v: unknown;
  try {
    v = JSON.parse(channelData);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const { user_id: id, user_info: info } = v as { user_id?: unknown; user_info?: unknown };
  if ((typeof id !== 'string' || id === '' || id.length > 128) && !(typeof id === 'number' && Number.isFinite(id))) return null;
  return { id: String(id), info: info ?? null };
}
