/**
 * One websocket frame built once for every member a channel message is
 * forwarded to (FORWARD subscriptions, bound and events mode): the hub
 * makes one PreparedFrame per delivery, the first member that forwards
 * frames it (ws's own `Sender.frame`, unmasked, FIN, no RSV1), and each
 * member writes the same buffers to its socket.
 *
 * A direct write is made only where it cannot differ from `ws.send`:
 * the connection is open, server side (unmasked), without
 * permessage-deflate, not inside a fragmented message, and ws's sender has
 * nothing queued or in progress (its queue fills only while it compresses
 * or reads a Blob), so our bytes never land inside a frame ws is still
 * writing. Otherwise the member falls back to `ws.send`. Either way the
 * bytes are counted in `ws.bufferedAmount` (the socket's writable length),
 * which the members' high-water checks read.
 *
 * This reads ws's private fields (`_socket`, `_sender`, `_extensions`,
 * `_isServer`), checked against ws 8.23 (lib/websocket.js, lib/sender.js);
 * a ws without them gets `ws.send`.
 */
import type { Socket } from 'node:net';
import * as wsModule from 'ws';
import type { WebSocket } from 'ws';

interface FrameOptions {
  fin: boolean;
  opcode: number;
  mask: boolean;
  readOnly: boolean;
  rsv1: boolean;
}

/** ws's frame builder (lib/sender.js), which @types/ws does not declare. */
const { Sender } = wsModule as unknown as { Sender: { frame(data: Buffer, options: FrameOptions): Buffer[] } };

/** ws's sender state when it is neither compressing nor reading a Blob (lib/sender.js, DEFAULT). */
const SENDER_IDLE = 0;
const OPEN = 1;

interface WsInternals {
  _socket?: Socket;
  _sender?: { _state?: number; _queue?: unknown[]; _firstFragment?: boolean } | null;
  _extensions?: Record<string, unknown>;
  _isServer?: boolean;
}

export class PreparedFrame {
  #parts: Buffer[] | null = null;

  constructor(
    readonly data: Buffer,
    readonly binary: boolean,
  ) {}

  /** Header and payload (the payload is not copied), built on first use. */
  get parts(): Buffer[] {
    return (this.#parts ??= Sender.frame(this.data, { fin: true, opcode: this.binary ? 0x2 : 0x1, mask: false, readOnly: true, rsv1: false }));
  }
}

/** Sends the message on `ws`: the prepared bytes straight to its socket where that is safe (see above), `ws.send` otherwise. */
export function sendPrepared(ws: WebSocket, frame: PreparedFrame): void {
  const socket = directSocket(ws);
  if (!socket) return void ws.send(frame.data, { binary: frame.binary });
  const parts = frame.parts;
  // As ws's own sendFrame: header and payload in one write of the socket.
  socket.cork();
  for (const p of parts) socket.write(p);
  socket.uncork();
}

function directSocket(ws: WebSocket): Socket | null {
  const w = ws as unknown as WsInternals;
  const sender = w._sender;
  const socket = w._socket;
  if (ws.readyState !== OPEN || !socket || !socket.writable || !sender || w._isServer !== true) return null;
  if (!w._extensions || w._extensions['permessage-deflate'] !== undefined) return null;
  if (sender._state !== SENDER_IDLE || !Array.isArray(sender._queue) || sender._queue.length > 0 || sender._firstFragment !== true) return null;
  return socket;
}
