/**
 * The daemon↔PHP framing carried inside FastCGI STDIN/STDOUT, version 1
 * (docs/protocol.md): type(1) length(4, big-endian) payload(length).
 * Frames ignore record boundaries. Sans-IO: bytes in, frames out.
 * Payloads are views into the pushed chunks where possible, so a caller must
 * not reuse a buffer after pushing it (socket chunks never are).
 */

export const PROTOCOL_VERSION = 1;
export const FRAME_HEADER_LEN = 5;

export const FrameType = Object.freeze({
  Open: 0x00,
  Text: 0x01,
  Binary: 0x02,
  Close: 0x08,
  Subscribe: 0x10,
  Unsubscribe: 0x11,
  Publish: 0x12,
  Send: 0x13,
  Channel: 0x14,
  Timer: 0x20,
  Tick: 0x21,
  Wake: 0x22,
  Meta: 0x30,
} as const);

export interface Frame {
  type: number;
  payload: Buffer;
}

export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FrameError';
  }
}

export function frameHeader(type: number, length: number): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER_LEN);
  h[0] = type;
  h.writeUInt32BE(length, 1);
  return h;
}

/** Header and payload as two buffers, so the payload is never copied. */
export function encodeFrame(type: number, payload: Buffer): Buffer[] {
  return payload.length ? [frameHeader(type, payload.length), payload] : [frameHeader(type, 0)];
}

export function closePayload(code: number, reason: string): Buffer {
  const r = Buffer.from(reason, 'utf8');
  const out = Buffer.allocUnsafe(2 + r.length);
  out.writeUInt16BE(code, 0);
  r.copy(out, 2);
  return out;
}

/** Close frame payload → code and reason; an empty payload means 1005 (no code). */
export function parseClosePayload(payload: Buffer): { code: number; reason: string } {
  if (payload.length === 0) return { code: 1005, reason: '' };
  if (payload.length === 1) throw new FrameError('close payload of 1 byte');
  return { code: payload.readUInt16BE(0), reason: payload.toString('utf8', 2) };
}

const enum State {
  Header,
  Payload,
  Failed,
}

export class FrameDecoder {
  #state = State.Header;
  #header = Buffer.alloc(FRAME_HEADER_LEN);
  #headerFill = 0;
  #type = 0;
  #length = 0;
  #parts: Buffer[] = [];
  #filled = 0;

  constructor(
    private readonly maxPayload: number,
    private readonly onFrame: (frame: Frame) => void,
  ) {}

  /** True between frames: where a stream may cleanly end. */
  get idle(): boolean {
    return this.#state === State.Header && this.#headerFill === 0;
  }

  /** Throws FrameError (and stays failed) on an oversized frame. */
  push(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.#state === State.Header) off = this.#readHeader(chunk, off);
      else if (this.#state === State.Payload) off = this.#readPayload(chunk, off);
      else throw new FrameError('decoder used after an error');
    }
  }

  #readHeader(chunk: Buffer, off: number): number {
    const take = Math.min(FRAME_HEADER_LEN - this.#headerFill, chunk.length - off);
    chunk.copy(this.#header, this.#headerFill, off, off + take);
    this.#headerFill += take;
    if (this.#headerFill < FRAME_HEADER_LEN) return off + take;
    this.#headerFill = 0;
    this.#type = this.#header[0]!;
    this.#length = this.#header.readUInt32BE(1);
    if (this.#length > this.maxPayload) {
      this.#state = State.Failed;
      throw new FrameError(`frame of ${this.#length} bytes exceeds the ${this.maxPayload}-byte limit`);
    }
    this.#state = State.Payload;
    if (this.#length === 0) this.#emit(Buffer.alloc(0));
    return off + take;
  }

  #readPayload(chunk: Buffer, off: number): number {
    const need = this.#length - this.#filled;
    const avail = chunk.length - off;
    if (this.#filled === 0 && avail >= need) {
      this.#emit(chunk.subarray(off, off + need));
      return off + need;
    }
    const take = Math.min(need, avail);
    this.#parts.push(chunk.subarray(off, off + take));
    this.#filled += take;
    if (this.#filled === this.#length) {
      const payload = Buffer.concat(this.#parts, this.#filled);
      this.#parts = [];
      this.#filled = 0;
      this.#emit(payload);
    }
    return off + take;
  }

  #emit(payload: Buffer): void {
    this.#state = State.Header;
    this.onFrame({ type: this.#type, payload });
  }
}
