/**
 * Pusher Channels protocol 7 messages, both ways, and how hub messages map
 * onto Pusher events. Pure: text in, values out; no sockets.
 *
 * Every message is a JSON object `{"event", "channel"?, "data"}`. The
 * server's `data` is mostly a JSON-encoded string (pusher-js decodes it
 * again); clients send it as an object.
 *
 * The hub carries one message format for everyone (docs/laravel.md, "One hub"):
 * a Pusher event on channel C is published on hub channel C as the
 * envelope `{"event": NAME, "data": DATA}` (plus `"user_id"` for a client
 * event on a presence channel). wsfpm subscribers receive that JSON text as
 * it is. The other way, a hub message that is such an envelope reaches
 * Pusher clients as that event; any other text message reaches them as the
 * event `message` with the text as its data; binary messages do not reach
 * them (the protocol is text only).
 */

export type ClientMessage =
  | { kind: 'subscribe'; channel: string; auth: unknown; channelData: unknown }
  | { kind: 'unsubscribe'; channel: string }
  | { kind: 'ping' }
  | { kind: 'pong' }
  | { kind: 'client-event'; event: string; channel: string; data: unknown }
  | { kind: 'signin'; auth: unknown; userData: unknown }
  | { kind: 'bad'; why: string };

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Clients send `data` as an object; some send it JSON-encoded. */
function dataObject(raw: unknown): Json | null {
  if (isObject(raw)) return raw;
  if (typeof raw !== 'string') return null;
  try {
    const v: unknown = JSON.parse(raw);
    return isObject(v) ? v : null;
  } catch {
    return null;
  }
}

export function parseClientMessage(text: string): ClientMessage {
  let msg: unknown;
  try {
    msg = JSON.parse(text);
  } catch {
    return { kind: 'bad', why: 'not JSON' };
  }
  if (!isObject(msg) || typeof msg.event !== 'string') return { kind: 'bad', why: 'not an object with a string "event"' };
  const event = msg.event;
  switch (event) {
    case 'pusher:ping':
      return { kind: 'ping' };
    case 'pusher:pong':
      return { kind: 'pong' };
    case 'pusher:signin': {
      const data = dataObject(msg.data);
      if (!data) return { kind: 'bad', why: 'pusher:signin without data' };
      return { kind: 'signin', auth: data.auth, userData: data.user_data };
    }
    case 'pusher:subscribe':
    case 'pusher:unsubscribe': {
      const data = dataObject(msg.data);
      if (!data || typeof data.channel !== 'string') return { kind: 'bad', why: `${event} without a channel` };
      if (event === 'pusher:unsubscribe') return { kind: 'unsubscribe', channel: data.channel };
      return { kind: 'subscribe', channel: data.channel, auth: data.auth, channelData: data.channel_data };
    }
  }
  if (event.startsWith('client-')) {
    if (typeof msg.channel !== 'string') return { kind: 'bad', why: 'client event without a channel' };
    return { kind: 'client-event', event, channel: msg.channel, data: msg.data ?? null };
  }
  return { kind: 'bad', why: `unknown event ${JSON.stringify(event.slice(0, 64))}` };
}

export type ChannelKind = 'public' | 'private' | 'presence';

/** `private-encrypted-` channels are private ones to the server: the encryption is end to end. */
export const channelKind = (channel: string): ChannelKind => (channel.startsWith('presence-') ? 'presence' : channel.startsWith('private-') ? 'private' : 'public');

export const connectionEstablished = (socketId: string, activityTimeout: number): string =>
  JSON.stringify({ event: 'pusher:connection_established', data: JSON.stringify({ socket_id: socketId, activity_timeout: activityTimeout }) });

export const pusherError = (code: number, message: string): string => JSON.stringify({ event: 'pusher:error', data: { code, message } });

export const pong = (): string => JSON.stringify({ event: 'pusher:pong', data: {} });

export interface PresenceList {
  ids: string[];
  hash: Record<string, unknown>;
  count: number;
}

export const subscriptionSucceeded = (channel: string, presence?: PresenceList): string =>
  JSON.stringify({ event: 'pusher_internal:subscription_succeeded', channel, data: JSON.stringify(presence ? { presence } : {}) });

/** pusher-js emits it on the channel as `pusher:subscription_error` (Echo's `.error()`). */
export const subscriptionError = (channel: string, type: string, error: string, status: number): string =>
  JSON.stringify({ event: 'pusher:subscription_error', channel, data: { type, error, status } });

export const signinSuccess = (userData: string): string => JSON.stringify({ event: 'pusher:signin_success', data: { user_data: userData } });

/**
 * After `pusher:signin`, pusher-js subscribes to this channel of its user;
 * the HTTP API's events to it reach every socket signed in as that user.
 * `#` keeps it out of wsfpm's channel names: no PHP script can subscribe to
 * or publish on it, only the signed-in user and the signed API.
 */
const USER_CHANNEL = /^#server-to-user-([A-Za-z0-9_.:@/=,;-]{1,100})$/;
export const userChannel = (userId: string): string => `#server-to-user-${userId}`;
export const isUserChannel = (name: string): boolean => USER_CHANNEL.test(name);
export const isUserId = (id: string): boolean => USER_CHANNEL.test(userChannel(id));

/** A Pusher event as the hub carries it. */
export function hubEnvelope(event: string, data: unknown, userId?: string): Buffer {
  return Buffer.from(JSON.stringify(userId === undefined ? { event, data } : { event, data, user_id: userId }));
}

export const memberAdded = (userId: string, userInfo: unknown): Buffer => hubEnvelope('pusher_internal:member_added', JSON.stringify({ user_id: userId, user_info: userInfo }));
export const memberRemoved = (userId: string): Buffer => hubEnvelope('pusher_internal:member_removed', JSON.stringify({ user_id: userId }));

/** The event name a plain (non-envelope) hub text message has for Pusher clients. */
export const PLAIN_EVENT = 'message';

// One publish reaches every subscriber with the same Buffer: it is parsed once, not once per subscriber.
let lastData: Buffer | null = null;
let lastChannel = '';
let lastFrame: string | null = null;

/** The Pusher message for a hub message on `channel`; null for what Pusher clients cannot receive. */
export function pusherFrame(channel: string, data: Buffer, binary: boolean): string | null {
  if (binary) return null;
  if (data === lastData && channel === lastChannel) return lastFrame;
  const text = data.toString('utf8');
  let frame: string;
  const envelope = parseEnvelope(text);
  if (envelope) {
    frame = JSON.stringify(envelope.userId === undefined
      ? { event: envelope.event, channel, data: envelope.data }
      : { event: envelope.event, channel, data: envelope.data, user_id: envelope.userId });
  } else {
    frame = JSON.stringify({ event: PLAIN_EVENT, channel, data: text });
  }
  lastData = data;
  lastChannel = channel;
  lastFrame = frame;
  return frame;
}

function parseEnvelope(text: string): { event: string; data: unknown; userId?: string } | null {
  if (!text.startsWith('{')) return null;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObject(v) || typeof v.event !== 'string' || !Object.hasOwn(v, 'data')) return null;
  return typeof v.user_id === 'string' ? { event: v.event, data: v.data, userId: v.user_id } : { event: v.event, data: v.data };
}
