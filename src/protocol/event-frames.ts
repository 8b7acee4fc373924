/**
 * Events mode (docs/protocol.md, "Events mode"): the OPEN payload that
 * names a connection's mode, and the bodies of event requests. Pure: bytes
 * in, values out.
 */
import { FrameError } from './frames.ts';

export const MODE_EVENTS = 0x01;
export const MAX_BATCH = 256;

export type OpenMode = { mode: 'bound' } | { mode: 'events'; batch: number };

/** An empty OPEN payload (every library before events mode) is bound mode. */
export function parseOpenPayload(p: Buffer): OpenMode {
  if (p.length === 0) return { mode: 'bound' };
  if (p[0] !== MODE_EVENTS) throw new FrameError(`OPEN names unknown mode 0x${p[0]!.toString(16)}`);
  if (p.length !== 3) throw new FrameError('an events-mode OPEN payload is 3 bytes: mode, batch (u16)');
  const batch = p.readUInt16BE(1);
  if (batch > MAX_BATCH) throw new FrameError(`batch ${batch} is over ${MAX_BATCH}`);
  return { mode: 'events', batch: Math.max(1, batch) };
}
