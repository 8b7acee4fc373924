/**
 * The actions an event's answer carries (docs/protocol.md, "Event
 * requests"). An answer is checked whole before anything is applied, so a
 * bad frame anywhere means no action at all: all or nothing.
 */
import { isUtf8 } from 'node:buffer';
import { FrameType, FrameError, parseClosePayload, type Frame } from '../protocol/frames.ts';
import { parsePublish, parseSend, parseSubscribe, parseUnsubscribe } from '../protocol/channel-frames.ts';
import { sendableCloseCode } from '../bridge/bridge.ts';
import { ownCopy } from './own-copy.ts';

export type Action =
  | { kind: 'send'; data: Buffer; binary: boolean }
  | { kind: 'close'; code: number; reason: string }
  | { kind: 'subscribe'; channel: string; forward: boolean; history: boolean }
  | { kind: 'unsubscribe'; channel: string }
  | { kind: 'publish'; channel: string; data: Buffer; binary: boolean; excludeSelf: boolean }
  | { kind: 'sendTo'; id: string; data: Buffer; binary: boolean }
  | { kind: 'meta'; meta: Buffer | null };

export interface ActionLimits {
  maxMeta: number;
  maxChannels: number;
  /** The connection's subscriptions now, to check the limit before anything changes. */
  subscribed: Iterable<string>;
}

/** Throws FrameError for any frame that is not a valid action. */
export function parseActions(frames: readonly Frame[], limits: ActionLimits): Action[] {
  const actions: Action[] = [];
  const channels = new Set(limits.subscribed);
  for (const frame of frames) {
    switch (frame.type) {
      case FrameType.Open:
        break;
      case FrameType.Text:
        if (!isUtf8(frame.payload)) throw new FrameError('text frame is not valid UTF-8');
        actions.push({ kind: 'send', data: frame.payload, binary: false });
        break;
      case FrameType.Binary:
        actions.push({ kind: 'send', data: frame.payload, binary: true });
        break;
      case FrameType.Close: {
        const { code, reason } = parseClosePayload(frame.payload);
        if (code !== 1005 && !sendableCloseCode(code)) throw new FrameError(`close code ${code} may not be sent`);
        actions.push({ kind: 'close', code: code === 1005 ? 1000 : code, reason });
        break;
      }
      case FrameType.Subscribe: {
        const s = parseSubscribe(frame.payload);
        channels.add(s.channel);
        if (channels.size > limits.maxChannels) throw new FrameError(`SUBSCRIBE ${s.channel}: over the limit of ${limits.maxChannels} channels per connection`);
        actions.push({ kind: 'subscribe', ...s });
        break;
      }
      case FrameType.Unsubscribe: {
        const channel = parseUnsubscribe(frame.payload);
        channels.delete(channel);
        actions.push({ kind: 'unsubscribe', channel });
        break;
      }
      case FrameType.Publish:
        actions.push({ kind: 'publish', ...parsePublish(frame.payload) });
        break;
      case FrameType.Send:
        actions.push({ kind: 'sendTo', ...parseSend(frame.payload) });
        break;
      case FrameType.Meta:
        if (frame.payload.length > limits.maxMeta) throw new FrameError(`META of ${frame.payload.length} bytes is over the ${limits.maxMeta}-byte limit (--max-meta)`);
        // Copied: the payload is a view into a socket chunk that would otherwise live as long as the connection.
        actions.push({ kind: 'meta', meta: frame.payload.length ? ownCopy(frame.payload) : null });
        break;
      case FrameType.Timer:
        throw new FrameError('TIMER is a bound-mode frame; events-mode scripts have no timer');
      default:
        throw new FrameError(`unknown frame type 0x${frame.type.toString(16)} in an event's answer`);
    }
  }
  return actions;
}
