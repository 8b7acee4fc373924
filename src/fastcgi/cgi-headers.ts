/**
 * CGI response header block (RFC 3875, section 6) at the start of STDOUT:
 * `Name: value` lines ended by an empty line, CRLF or bare LF. `Status:`
 * carries the HTTP status; without it the status is 200, or 302 when a
 * `Location` is given (as PHP's SAPI and Apache do). Sans-IO: feed STDOUT
 * bytes until it returns the parsed block and the body bytes that followed.
 */

export interface CgiHead {
  status: number;
  statusText: string;
  /** In arrival order; repeated names (Set-Cookie) stay separate. */
  headers: Array<[string, string]>;
}

export class CgiHeaderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CgiHeaderError';
  }
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export class CgiHeaderParser {
  #held: Buffer[] = [];
  #heldLength = 0;

  constructor(private readonly maxBytes: number) {}

  /** Returns null until the block is complete; throws CgiHeaderError on a bad or oversized block. */
  push(chunk: Buffer): { head: CgiHead; rest: Buffer } | null {
    const prevLength = this.#heldLength;
    this.#held.push(chunk);
    this.#heldLength += chunk.length;
    const all = this.#held.length === 1 ? chunk : Buffer.concat(this.#held, this.#heldLength);
    // Resume the search a little before the new bytes: the terminator may straddle chunks.
    const from = Math.max(0, prevLength - 3);
    const end = findBlockEnd(all, from);
    if (end === null) {
      // Up to 3 bytes may be a terminator still arriving; they do not count toward the limit.
      if (this.#heldLength > this.maxBytes + 3) throw new CgiHeaderError(`header block larger than ${this.maxBytes} bytes`);
      if (this.#held.length > 1) this.#held = [all];
      return null;
    }
    if (end.headerEnd > this.maxBytes) throw new CgiHeaderError(`header block larger than ${this.maxBytes} bytes`);
    this.#held = [];
    this.#heldLength = 0;
    return { head: parseBlock(all.toString('latin1', 0, end.headerEnd)), rest: all.subarray(end.bodyStart) };
  }
}

function findBlockEnd(buf: Buffer, from: number): { headerEnd: number; bodyStart: number } | null {
  // An empty first line: no headers at all.
  if (buf[0] === 0x0a) return { headerEnd: 0, bodyStart: 1 };
  if (buf[0] === 0x0d && buf[1] === 0x0a) return { headerEnd: 0, bodyStart: 2 };
  for (let i = from; i < buf.length; i++) {
    if (buf[i] !== 0x0a) continue;
    // A line feed at i ends a line; the block ends if the next line is empty.
    if (buf[i + 1] === 0x0a) return { headerEnd: i, bodyStart: i + 2 };
    if (buf[i + 1] === 0x0d && buf[i + 2] === 0x0a) return { headerEnd: i, bodyStart: i + 3 };
  }
  return null;
}

function parseBlock(text: string): CgiHead {
  let status = 0;
  let statusText = '';
  const headers: Array<[string, string]> = [];
  for (const rawLine of text.split('\n')) {
    const line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine;
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new CgiHeaderError(`malformed header line ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) throw new CgiHeaderError(`invalid header name ${JSON.stringify(name.slice(0, 80))}`);
    const value = line.slice(colon + 1).trim();
    if (name.toLowerCase() === 'status') {
      const m = /^(\d{3})(?:\s+(.*))?$/.exec(value);
      if (!m) throw new CgiHeaderError(`invalid Status ${JSON.stringify(value.slice(0, 80))}`);
      status = Number(m[1]);
      statusText = m[2] ?? '';
      if (status < 100 || status > 599) throw new CgiHeaderError(`invalid Status ${status}`);
      continue;
    }
    headers.push([name, value]);
  }
  if (status === 0) status = headers.some(([n]) => n.toLowerCase() === 'location') ? 302 : 200;
  return { status, statusText, headers };
}

/** Headers by lower-cased name, repeated ones (Set-Cookie) kept as a list, for an HTTP reply. */
export function groupHeaders(headers: Array<[string, string]>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [name, value] of headers) {
    const lower = name.toLowerCase();
    const list = out.get(lower);
    if (list) list.push(value);
    else out.set(lower, [value]);
  }
  return out;
}
