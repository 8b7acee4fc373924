/**
 * PHP's requests to the hub (SUBSCRIBE, UNSUBSCRIBE, PUBLISH, SEND, TIMER, WAKE),
 * carried in its own output stream. A malformed or over-limit request is a
 * broken protocol: it throws, and the bridge closes the connection (1011).
 */
import { FrameType, FrameError, type Frame } from '../protocol/frames.ts';
import { parsePublish, parseSend, parseSubscribe, parseTimer, parseUnsubscribe, parseWake } from '../protocol/channel-frames.ts';
import { type Hub } from '../hub/hub.ts';

export interface HubFrameContext {
  hub: Hub;
  id: string;
  /** Starts (ms > 0) or stops (0) this connection's timer. */
  setTimer(ms: number): void;
  /** Sends WAKE(seq) back after `ms`, replacing a wake not yet sent. */
  wake(ms: number, seq: Buffer): void;
}

/** True if the frame was a hub frame (handled), false if it is not one. */
export function handleHubFrame(frame: Frame, ctx: HubFrameContext): boolean {
  switch (frame.type) {
    case FrameType.Subscribe: {
      const { channel, forward, history } = parseSubscribe(frame.payload);
      if (!ctx.hub.subscribe(ctx.id, channel, forward, history)) throw new FrameError(`SUBSCRIBE ${channel}: over the limit of channels per connection`);
      return true;
    }
    case FrameType.Unsubscribe:
      ctx.hub.unsubscribe(ctx.id, parseUnsubscribe(frame.payload));
      return true;
    case FrameType.Publish: {
      const p = parsePublish(frame.payload);
      ctx.hub.publish(p.channel, p.data, p.binary, p.excludeSelf ? ctx.id : null);
      return true;
    }
    case FrameType.Send: {
      const s = parseSend(frame.payload);
      ctx.hub.send(s.id, s.data, s.binary);
      return true;
    }
    case FrameType.Timer:
      ctx.setTimer(parseTimer(frame.payload));
      return true;
    case FrameType.Wake: {
      const w = parseWake(frame.payload);
      ctx.wake(w.ms, w.seq);
      return true;
    }
    default:
      return false;
  }
}
