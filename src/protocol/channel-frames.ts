/**
 * Payloads of the channel, send and timer frames (docs/protocol.md,
 * "Channels, sends and timers"). Pure: bytes in, values out; a malformed
 * payload throws FrameError.
 */
import { FrameError } from './frames.ts';

export const FLAG_BINARY = 0x01;
export const FLAG_FORWARD = 0x01;
/** SUBSCRIBE: with FORWARD, the channel keeps history and this client gets envelopes it can resume from. */
export const FLAG_HISTORY = 0x02;
export const FLAG_EXCLUDE_SELF = 0x02;
export const MIN_TIMER_MS = 10;

// Pusher channel names may also hold = , ; so they are here too: a Pusher channel is a hub channel of the same name.
// None of these characters means anything in JSON, Redis keys or a percent-encoded URL.
const CHANNEL = /^[A-Za-z0-9_.:@/=,;-]{1,128}$/;
const CONNECTION_ID = /^[0-9a-f]{32}$/;

export const isChannelName = (s: string): boolean => CHANNEL.test(s);
export const isConnectionId = (s: string): boolean => CONNECTION_ID.test(s);

function channelName(raw: string): string {
  if (!CHANNEL.test(raw)) throw new FrameError(`invalid channel name ${JSON.stringify(raw.slice(0, 140))}`);
  return raw;
}

export function parseSubscribe(p: Buffer): { channel: string; forward: boolean; history: boolean } {
  if (p.length < 2) throw new FrameError('SUBSCRIBE payload too short');
  return { forward: (p[0]! & FLAG_FORWARD) !== 0, history: (p[0]! & FLAG_HISTORY) !== 0, channel: channelName(p.toString('latin1', 1)) };
}

export function parseUnsubscribe(p: Buffer): string {
  return channelName(p.toString('latin1'));
}

/** flags(1) nameLength(1) name data — the shape of PUBLISH, SEND and CHANNEL. */
function parseNamed(p: Buffer, what: string): { flags: number; name: string; data: Buffer } {
  if (p.length < 2) throw new FrameError(`${what} payload too short`);
  const len = p[1]!;
  if (len === 0 || p.length < 2 + len) throw new FrameError(`${what} name length ${len} does not fit the payload`);
  return { flags: p[0]!, name: p.toString('latin1', 2, 2 + len), data: p.subarray(2 + len) };
}

export function parsePublish(p: Buffer): { channel: string; binary: boolean; excludeSelf: boolean; data: Buffer } {
  const { flags, name, data } = parseNamed(p, 'PUBLISH');
  return { channel: channelName(name), binary: (flags & FLAG_BINARY) !== 0, excludeSelf: (flags & FLAG_EXCLUDE_SELF) !== 0, data };
}

export function parseSend(p: Buffer): { id: string; binary: boolean; data: Buffer } {
  const { flags, name, data } = parseNamed(p, 'SEND');
  if (!CONNECTION_ID.test(name)) throw new FrameError(`invalid connection id ${JSON.stringify(name.slice(0, 40))}`);
  return { id: name, binary: (flags & FLAG_BINARY) !== 0, data };
}

export function parseTimer(p: Buffer): number {
  if (p.length !== 4) throw new FrameError('TIMER payload must be 4 bytes');
  const ms = p.readUInt32BE(0);
  if (ms !== 0 && ms < MIN_TIMER_MS) throw new FrameError(`timer interval ${ms} ms is under ${MIN_TIMER_MS} ms`);
  return ms;
}

/** WAKE from PHP: after `ms`, send WAKE(`seq`) back (receive($timeout) without the side channel). */
export function parseWake(p: Buffer): { ms: number; seq: Buffer } {
  if (p.length !== 8) throw new FrameError('WAKE payload must be 8 bytes');
  return { ms: p.readUInt32BE(0), seq: Buffer.from(p.subarray(4, 8)) };
}

/** The CHANNEL frame's payload head: the data follows it unchanged, so it is never copied. */
export function channelHead(channel: string, binary: boolean): Buffer {
  const name = Buffer.from(channel, 'latin1');
  const head = Buffer.allocUnsafe(2 + name.length);
  head[0] = binary ? FLAG_BINARY : 0;
  head[1] = name.length;
  name.copy(head, 2);
  return head;
}
