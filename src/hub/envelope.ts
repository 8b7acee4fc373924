/**
 * What a browser sees of a history subscription (docs/protocol.md, "History
 * and resume"): each message in a small JSON envelope with its channel,
 * offset and epoch, and one notice per subscription (subscribed, recovered
 * or lost). The resume position comes back as the `wsfpm_resume` query
 * parameter of the next websocket URL. Pure: values in, bytes out.
 */
import { isChannelName } from '../protocol/channel-frames.ts';
import { type Position } from './history.ts';

/** Every envelope starts with these bytes, so a page tells them from the script's own messages. */
export const ENVELOPE_PREFIX = '{"wsfpm":';
export const RESUME_PARAM = 'wsfpm_resume';

const EPOCH = /^[0-9a-z]{1,32}$/;
const OFFSET = /^(0|[1-9][0-9]{0,15})$/;

export function messageEnvelope(channel: string, position: Position | null, data: Buffer, binary: boolean): Buffer {
  const head: Record<string, unknown> = { wsfpm: 'message', channel };
  if (position) Object.assign(head, { epoch: position.epoch, offset: position.offset });
  if (binary) head.binary = true;
  head.data = binary ? data.toString('base64') : data.toString('utf8');
  return Buffer.from(JSON.stringify(head));
}

export function noticeEnvelope(kind: 'subscribed' | 'recovered' | 'lost', channel: string, position: Position, missed?: number): Buffer {
  const head: Record<string, unknown> = { wsfpm: kind, channel, epoch: position.epoch, offset: position.offset };
  if (missed !== undefined) head.missed = missed;
  return Buffer.from(JSON.stringify(head));
}

/**
 * The positions a reconnecting client names: `wsfpm_resume=EPOCH.OFFSET.CHANNEL`,
 * once per channel, at most `max` of them. Malformed values are skipped and
 * reported (the connection goes on, that channel just starts afresh).
 */
export function parseResume(url: string, max: number): { positions: Map<string, Position>; rejected: string[] } {
  const positions = new Map<string, Position>();
  const rejected: string[] = [];
  const q = url.indexOf('?');
  if (q === -1) return { positions, rejected };
  let params: URLSearchParams;
  try {
    params = new URLSearchParams(url.slice(q + 1));
  } catch {
    return { positions, rejected: ['unreadable query string'] };
  }
  for (const value of params.getAll(RESUME_PARAM)) {
    const [epoch = '', offset = '', ...rest] = value.split('.');
    const channel = rest.join('.');
    if (!EPOCH.test(epoch) || !OFFSET.test(offset) || !isChannelName(channel) || !Number.isSafeInteger(Number(offset))) {
      rejected.push(value.slice(0, 160));
    } else if (positions.size >= max && !positions.has(channel)) {
      rejected.push(`${value.slice(0, 160)} (over ${max} channels)`);
    } else {
      positions.set(channel, { epoch, offset: Number(offset) });
    }
  }
  return { positions, rejected };
}
