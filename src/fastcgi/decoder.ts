/**
 * Sans-IO FastCGI record decoder: feed it bytes in any chunking, it calls
 * `onRecord` once per complete record. It knows nothing of sockets. Content
 * is a view into the fed chunk when the record lies within one chunk (the
 * common case), and a single copy when a record spans chunks; records are at
 * most 65535 bytes, so what it holds is bounded.
 */
import { HEADER_LEN, VERSION } from './records.ts';

export interface FcgiRecord {
  type: number;
  requestId: number;
  content: Buffer;
}

export class FcgiDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FcgiDecodeError';
  }
}

const enum State {
  Header,
  Content,
  Padding,
  Failed,
}

export class RecordDecoder {
  #state = State.Header;
  #header = Buffer.alloc(HEADER_LEN);
  #headerFill = 0;
  #type = 0;
  #requestId = 0;
  #contentLength = 0;
  #paddingLeft = 0;
  #parts: Buffer[] = [];
  #partsLength = 0;

  /**
   * `stream`: record types whose content is a byte stream (STDOUT). Their
   * content goes to `onPiece` as it arrives, in views of the fed chunks, and
   * is never gathered into whole records: a large message then crosses the
   * decoder without a copy. Their empty end-of-stream record is still an
   * `onRecord`.
   */
  constructor(
    private readonly onRecord: (record: FcgiRecord) => void,
    private readonly stream?: { types: ReadonlySet<number>; onPiece: (type: number, requestId: number, piece: Buffer) => void },
  ) {}

  /** Feeds bytes; throws FcgiDecodeError (and stays failed) on a malformed stream. */
  push(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      switch (this.#state) {
        case State.Header:
          off = this.#readHeader(chunk, off);
          break;
        case State.Content:
          off = this.#readContent(chunk, off);
          break;
        case State.Padding:
          off = this.#skipPadding(chunk, off);
          break;
        case State.Failed:
          throw new FcgiDecodeError('decoder used after a protocol error');
      }
    }
  }

  /** True when no partial record is held: a clean place for the stream to end. */
  get idle(): boolean {
    return this.#state === State.Header && this.#headerFill === 0;
  }

  #readHeader(chunk: Buffer, off: number): number {
    const take = Math.min(HEADER_LEN - this.#headerFill, chunk.length - off);
    chunk.copy(this.#header, this.#headerFill, off, off + take);
    this.#headerFill += take;
    off += take;
    if (this.#headerFill < HEADER_LEN) return off;
    this.#headerFill = 0;
    const h = this.#header;
    if (h[0] !== VERSION) {
      this.#state = State.Failed;
      throw new FcgiDecodeError(`unsupported FastCGI version ${h[0]}`);
    }
    this.#type = h[1]!;
    this.#requestId = h.readUInt16BE(2);
    this.#contentLength = h.readUInt16BE(4);
    this.#paddingLeft = h[6]!;
    this.#state = State.Content;
    if (this.#contentLength === 0) this.#emit(Buffer.alloc(0));
    return off;
  }

  #readContent(chunk: Buffer, off: number): number {
    const need = this.#contentLength - this.#partsLength;
    const avail = chunk.length - off;
    if (this.stream?.types.has(this.#type)) {
      const take = Math.min(need, avail);
      this.#partsLength += take;
      this.stream.onPiece(this.#type, this.#requestId, chunk.subarray(off, off + take));
      if (this.#partsLength === this.#contentLength) {
        this.#partsLength = 0;
        this.#state = this.#paddingLeft > 0 ? State.Padding : State.Header;
      }
      return off + take;
    }
    if (this.#partsLength === 0 && avail >= need) {
      this.#emit(chunk.subarray(off, off + need));
      return off + need;
    }
    const take = Math.min(need, avail);
    this.#parts.push(chunk.subarray(off, off + take));
    this.#partsLength += take;
    if (this.#partsLength === this.#contentLength) {
      // Copy: the views point into chunks the caller may reuse.
      const content = Buffer.concat(this.#parts, this.#partsLength);
      this.#parts = [];
      this.#partsLength = 0;
      this.#emit(content);
    } else {
      // Hold private copies of partial content for the same reason.
      this.#parts[this.#parts.length - 1] = Buffer.from(chunk.subarray(off, off + take));
    }
    return off + take;
  }

  #skipPadding(chunk: Buffer, off: number): number {
    const take = Math.min(this.#paddingLeft, chunk.length - off);
    this.#paddingLeft -= take;
    if (this.#paddingLeft === 0) this.#state = State.Header;
    return off + take;
  }

  #emit(content: Buffer): void {
    this.#state = this.#paddingLeft > 0 ? State.Padding : State.Header;
    this.onRecord({ type: this.#type, requestId: this.#requestId, content });
  }
}
