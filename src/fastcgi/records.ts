/**
 * FastCGI record layout and encoders, per the FastCGI Specification 1.0
 * (Open Market, 1996), sections 3 and 5. Pure functions: bytes out, no IO.
 *
 * Record: version(1) type(1) requestId(2) contentLength(2) paddingLength(1)
 * reserved(1), then content and padding. Content is at most 65535 bytes; we
 * pad content to a multiple of 8 as the spec recommends.
 */

export const VERSION = 1;
export const HEADER_LEN = 8;
export const MAX_CONTENT = 0xffff;
/** Largest chunk we put in one record: a multiple of 8, so padding stays 0. */
export const CHUNK = 0xfff8;

export const enum RecordType {
  BeginRequest = 1,
  AbortRequest = 2,
  EndRequest = 3,
  Params = 4,
  Stdin = 5,
  Stdout = 6,
  Stderr = 7,
  Data = 8,
  GetValues = 9,
  GetValuesResult = 10,
  UnknownType = 11,
}

export const ROLE_RESPONDER = 1;
export const FLAG_KEEP_CONN = 1;

export const enum ProtocolStatus {
  RequestComplete = 0,
  CantMpxConn = 1,
  Overloaded = 2,
  UnknownRole = 3,
}

export function recordHeader(type: RecordType, requestId: number, contentLength: number, paddingLength = 0): Buffer {
  const h = Buffer.allocUnsafe(HEADER_LEN);
  h[0] = VERSION;
  h[1] = type;
  h.writeUInt16BE(requestId, 2);
  h.writeUInt16BE(contentLength, 4);
  h[6] = paddingLength;
  h[7] = 0;
  return h;
}

/** One whole record as a single buffer (for small control records). */
export function encodeRecord(type: RecordType, requestId: number, content: Uint8Array = Buffer.alloc(0)): Buffer {
  if (content.length > MAX_CONTENT) throw new RangeError(`record content of ${content.length} bytes exceeds ${MAX_CONTENT}`);
  const padding = (8 - (content.length % 8)) % 8;
  const out = Buffer.alloc(HEADER_LEN + content.length + padding);
  recordHeader(type, requestId, content.length, padding).copy(out, 0);
  out.set(content, HEADER_LEN);
  return out;
}

export function encodeBeginRequest(requestId: number, keepConn = false): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt16BE(ROLE_RESPONDER, 0);
  body[2] = keepConn ? FLAG_KEEP_CONN : 0;
  return encodeRecord(RecordType.BeginRequest, requestId, body);
}

function lengthBytes(n: number): Buffer {
  if (n < 128) return Buffer.from([n]);
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE((n | 0x80000000) >>> 0, 0);
  return b;
}

/** Name-value pairs (spec 3.4): 1-byte lengths below 128, else 4 bytes with the top bit set. */
export function encodePairs(pairs: Iterable<readonly [string, string | Buffer]>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of pairs) {
    const n = Buffer.from(name, 'utf8');
    const v = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    if (n.length > 0x7fffffff || v.length > 0x7fffffff) throw new RangeError('name-value pair too long');
    parts.push(lengthBytes(n.length), lengthBytes(v.length), n, v);
  }
  return Buffer.concat(parts);
}

/**
 * A stream (PARAMS, STDIN) as records: content split into CHUNK-sized
 * records. Returns the list of buffers to write (headers interleaved with
 * slices of the caller's payload, never copied) so a socket can writev them.
 */
export function streamRecords(type: RecordType, requestId: number, content: Uint8Array): Buffer[] {
  const out: Buffer[] = [];
  const buf = Buffer.isBuffer(content) ? content : Buffer.from(content.buffer, content.byteOffset, content.length);
  for (let off = 0; off < buf.length; off += CHUNK) {
    const slice = buf.subarray(off, Math.min(off + CHUNK, buf.length));
    const padding = (8 - (slice.length % 8)) % 8;
    out.push(recordHeader(type, requestId, slice.length, padding), slice);
    if (padding) out.push(Buffer.alloc(padding));
  }
  return out;
}

/**
 * A stream's content given in parts (a frame header and its payload), as
 * records that span the parts freely: php-fpm reads every record header and
 * its padding with a read() of its own, so one frame in one record, unpadded,
 * costs it the fewest reads. Padding is optional (spec 3.3). The parts are
 * sliced, never copied.
 */
export function streamRecordsOf(type: RecordType, requestId: number, parts: readonly Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  let i = 0;
  let off = 0;
  let left = parts.reduce((n, p) => n + p.length, 0);
  while (left > 0) {
    const size = Math.min(CHUNK, left);
    out.push(recordHeader(type, requestId, size, 0));
    let need = size;
    while (need > 0) {
      const part = parts[i]!;
      const take = Math.min(need, part.length - off);
      if (take > 0) out.push(off === 0 && take === part.length ? part : part.subarray(off, off + take));
      off += take;
      need -= take;
      if (off === part.length) {
        i++;
        off = 0;
      }
    }
    left -= size;
  }
  return out;
}

/** The empty record that ends a stream. */
export function endOfStream(type: RecordType, requestId: number): Buffer {
  return recordHeader(type, requestId, 0, 0);
}

/** Decodes name-value pairs (used for GET_VALUES_RESULT and in tests). */
export function decodePairs(buf: Uint8Array): Array<[string, string]> {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
  const out: Array<[string, string]> = [];
  let off = 0;
  const readLen = (): number => {
    if (off >= b.length) throw new RangeError('truncated name-value pair');
    const first = b[off]!;
    if (first < 128) {
      off += 1;
      return first;
    }
    if (off + 4 > b.length) throw new RangeError('truncated name-value pair');
    const n = b.readUInt32BE(off) & 0x7fffffff;
    off += 4;
    return n;
  };
  while (off < b.length) {
    const nl = readLen();
    const vl = readLen();
    if (off + nl + vl > b.length) throw new RangeError('truncated name-value pair');
    out.push([b.toString('utf8', off, off + nl), b.toString('utf8', off + nl, off + nl + vl)]);
    off += nl + vl;
  }
  return out;
}
