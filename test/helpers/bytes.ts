/**
 * Byte-level helpers for the codec tests: hex literals, a seeded PRNG, the
 * chunkings every decoder test is fed with, and a bounded fuzz of the two
 * sans-IO decoders that runs in a worker thread under a watchdog, so an
 * infinite loop fails the test instead of hanging the suite.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { FcgiDecodeError, RecordDecoder } from '../../src/fastcgi/decoder.ts';
import { FrameDecoder, FrameError } from '../../src/protocol/frames.ts';

/** Bytes from hex text; whitespace, `|` and `_` are separators for readability. */
export function hex(text: string): Buffer {
  const clean = text.replace(/[\s|_]/g, '');
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(clean)) throw new Error(`bad hex literal ${JSON.stringify(text)}`);
  return Buffer.from(clean, 'hex');
}

/** Bytes as spaced lowercase hex (readable assertion diffs). */
export function toHex(buf: Uint8Array): string {
  return Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('hex').replace(/(..)(?!$)/g, '$1 ');
}

/** mulberry32: small, fast, deterministic; returns floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Integer in [min, max], inclusive. */
export function randInt(rng: () => number, min: number, max: number): number {
  return min + Math.floor(rng() * (max - min + 1));
}

export function randomBytes(rng: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rng() * 256);
  return b;
}

/** `buf` cut at random points, chunk sizes in [1, maxChunk]; each chunk is its own copy. */
export function randomChunks(buf: Buffer, rng: () => number, maxChunk: number): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < buf.length; ) {
    const n = Math.min(buf.length - off, randInt(rng, 1, maxChunk));
    out.push(Buffer.from(buf.subarray(off, off + n)));
    off += n;
  }
  return out;
}

export interface Chunking {
  label: string;
  chunks: Buffer[];
}

/** Whole, byte by byte, and random chunkings (fixed seed) of the same bytes. */
export function chunkings(buf: Buffer, seed = 0x5eed): Chunking[] {
  const rng = prng(seed);
  const out: Chunking[] = [
    { label: 'whole', chunks: [Buffer.from(buf)] },
    { label: 'byte by byte', chunks: Array.from(buf, (b) => Buffer.from([b])) },
  ];
  for (const max of [2, 3, 7, 9, 64, 1000, 70_000]) {
    out.push({ label: `random chunks of 1..${max} (seed ${seed})`, chunks: randomChunks(buf, rng, max) });
  }
  return out;
}

/**
 * Runs `feed` once per chunking of `buf`, asserts every run gives a result
 * deep-equal to the whole-buffer run, and returns that result.
 */
export function sameForAllChunkings<T>(buf: Buffer, feed: (chunks: Buffer[]) => T, seed = 0x5eed): T {
  const runs = chunkings(buf, seed);
  const first = runs[0]!;
  const expected = feed(first.chunks);
  for (const run of runs.slice(1)) {
    assert.deepStrictEqual(feed(run.chunks), expected, `${run.label} differs from whole (${buf.length} bytes)`);
  }
  return expected;
}

/** Outcome of feeding a decoder: what it emitted and the error that stopped it, if any. */
export interface Outcome<R> {
  items: R[];
  error: { name: string; message: string } | null;
  /** A further push after the error also threw the same error class. */
  staysFailed: boolean | null;
  idle: boolean;
}

export interface PushDecoder {
  push(chunk: Buffer): void;
  readonly idle: boolean;
}

/**
 * Feeds chunks to a decoder built by `make(emit)`; stops at the first throw,
 * then checks that one more push throws an error of the same class.
 * Emitted buffers are copied on arrival, so later chunk reuse cannot matter.
 */
export function feedDecoder<R>(chunks: Buffer[], make: (emit: (item: R) => void) => PushDecoder): Outcome<R> {
  const items: R[] = [];
  const decoder = make((item) => items.push(item));
  for (const chunk of chunks) {
    try {
      decoder.push(chunk);
    } catch (err) {
      const e = err as Error;
      let staysFailed = false;
      try {
        decoder.push(Buffer.from([0x01, 0x06, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00]));
      } catch (again) {
        staysFailed = (again as Error).constructor === e.constructor;
      }
      return { items, error: { name: e.name, message: e.message }, staysFailed, idle: decoder.idle };
    }
  }
  return { items, error: null, staysFailed: null, idle: decoder.idle };
}

// ---------------------------------------------------------------------------
// Bounded fuzz of RecordDecoder and FrameDecoder.

export type FuzzTarget = 'records' | 'frames';

export interface FuzzReport {
  inputs: number;
  /** Inputs that ended in the decoder's own error class. */
  decodeErrors: number;
  /** Records or frames emitted over all inputs. */
  emitted: number;
  /** Anything but the decoder's own error class escaping push(). */
  unexpected: string[];
  /** Disagreements with the reference parser, the whole-buffer run, or an invariant. */
  mismatches: string[];
}

interface Emitted {
  type: number;
  id: number;
  length: number;
  digest: string;
}

const digest = (b: Buffer): string => createHash('sha1').update(b).digest('hex').slice(0, 16);

/** Straightforward whole-buffer FastCGI parser: the oracle the decoder must agree with. */
function referenceRecords(buf: Buffer): { items: Emitted[]; failed: boolean } {
  const items: Emitted[] = [];
  let off = 0;
  while (off + 8 <= buf.length) {
    if (buf[off] !== 1) return { items, failed: true };
    const contentLength = buf.readUInt16BE(off + 4);
    const end = off + 8 + contentLength;
    if (end > buf.length) break;
    items.push({ type: buf[off + 1]!, id: buf.readUInt16BE(off + 2), length: contentLength, digest: digest(buf.subarray(off + 8, end)) });
    off = end + buf[off + 6]!;
  }
  return { items, failed: false };
}

function referenceFrames(buf: Buffer, maxPayload: number): { items: Emitted[]; failed: boolean } {
  const items: Emitted[] = [];
  let off = 0;
  while (off + 5 <= buf.length) {
    const length = buf.readUInt32BE(off + 1);
    if (length > maxPayload) return { items, failed: true };
    const end = off + 5 + length;
    if (end > buf.length) break;
    items.push({ type: buf[off]!, id: 0, length, digest: digest(buf.subarray(off + 5, end)) });
    off = end;
  }
  return { items, failed: false };
}

function validRecordStream(rng: () => number): Buffer {
  const parts: Buffer[] = [];
  const n = randInt(rng, 0, 6);
  for (let i = 0; i < n; i++) {
    const r = rng();
    const length = r < 0.2 ? 0 : r < 0.9 ? randInt(rng, 1, 64) : r < 0.98 ? randInt(rng, 65, 4096) : randInt(rng, 65_000, 65_535);
    const padding = rng() < 0.5 ? (8 - (length % 8)) % 8 : randInt(rng, 0, 255);
    const h = Buffer.alloc(8);
    h[0] = 1;
    h[1] = rng() < 0.9 ? randInt(rng, 1, 11) : randInt(rng, 0, 255);
    h.writeUInt16BE(rng() < 0.8 ? 1 : randInt(rng, 0, 0xffff), 2);
    h.writeUInt16BE(length, 4);
    h[6] = padding;
    parts.push(h, randomBytes(rng, length), randomBytes(rng, padding));
  }
  return Buffer.concat(parts);
}

function validFrameStream(rng: () => number, maxPayload: number): Buffer {
  const parts: Buffer[] = [];
  const n = randInt(rng, 0, 8);
  for (let i = 0; i < n; i++) {
    const r = rng();
    const length = r < 0.2 ? 0 : r < 0.9 ? randInt(rng, 1, Math.min(64, maxPayload + 1)) : randInt(rng, 0, Math.min(maxPayload + 2, 70_000));
    const h = Buffer.alloc(5);
    h[0] = rng() < 0.8 ? [0x00, 0x01, 0x02, 0x08][randInt(rng, 0, 3)]! : randInt(rng, 0, 255);
    h.writeUInt32BE(length, 1);
    parts.push(h, randomBytes(rng, length));
  }
  return Buffer.concat(parts);
}

/** One of: the valid stream, a mutation of it, or plain random bytes. */
function mutate(rng: () => number, valid: Buffer): Buffer {
  const b = Buffer.from(valid);
  switch (randInt(rng, 0, 7)) {
    case 0:
      return b;
    case 1: // flip bits
      for (let k = randInt(rng, 1, 4); k > 0 && b.length; k--) b[randInt(rng, 0, b.length - 1)]! ^= 1 << randInt(rng, 0, 7);
      return b;
    case 2: // overwrite bytes
      for (let k = randInt(rng, 1, 8); k > 0 && b.length; k--) b[randInt(rng, 0, b.length - 1)] = randInt(rng, 0, 255);
      return b;
    case 3: // truncate
      return b.subarray(0, randInt(rng, 0, b.length));
    case 4: {
      // insert random bytes
      const at = randInt(rng, 0, b.length);
      return Buffer.concat([b.subarray(0, at), randomBytes(rng, randInt(rng, 1, 16)), b.subarray(at)]);
    }
    case 5: {
      // delete a run
      const at = randInt(rng, 0, b.length);
      return Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + randInt(rng, 1, 16)))]);
    }
    case 6: // all-0xff lengths and friends
      for (let k = randInt(rng, 1, 4); k > 0 && b.length; k--) b[randInt(rng, 0, b.length - 1)] = rng() < 0.5 ? 0xff : 0x00;
      return b;
    default: {
      const r = randomBytes(rng, randInt(rng, 0, 256));
      if (r.length && rng() < 0.5) r[0] = 1; // often get past the version check
      return r;
    }
  }
}

/** Runs the fuzz in this thread. Deterministic for a given seed. */
export function runFuzz(target: FuzzTarget, seed: number, count: number): FuzzReport {
  const rng = prng(seed);
  const report: FuzzReport = { inputs: 0, decodeErrors: 0, emitted: 0, unexpected: [], mismatches: [] };
  const ErrorClass = target === 'records' ? FcgiDecodeError : FrameError;
  for (let i = 0; i < count; i++) {
    const maxPayload = target === 'frames' ? (rng() < 0.9 ? randInt(rng, 0, 300) : 1 << 20) : 0;
    const valid = target === 'records' ? validRecordStream(rng) : validFrameStream(rng, maxPayload);
    const input = mutate(rng, valid);
    const reference = target === 'records' ? referenceRecords(input) : referenceFrames(input, maxPayload);
    const runs: Array<{ items: Emitted[]; failed: boolean; idle: boolean }> = [];
    for (const chunks of [[input], randomChunks(input, rng, randInt(rng, 1, 40))]) {
      const items: Emitted[] = [];
      let failed = false;
      const decoder: PushDecoder =
        target === 'records'
          ? new RecordDecoder((r) => {
              if (r.content.length > 0xffff) report.mismatches.push(`#${i}: record content of ${r.content.length} bytes`);
              items.push({ type: r.type, id: r.requestId, length: r.content.length, digest: digest(r.content) });
            })
          : new FrameDecoder(maxPayload, (f) => {
              if (f.payload.length > maxPayload) report.mismatches.push(`#${i}: frame of ${f.payload.length} > ${maxPayload}`);
              items.push({ type: f.type, id: 0, length: f.payload.length, digest: digest(f.payload) });
            });
      for (const chunk of chunks) {
        try {
          decoder.push(chunk);
        } catch (err) {
          if (err instanceof ErrorClass) {
            failed = true;
            try {
              decoder.push(Buffer.from([1]));
              report.mismatches.push(`#${i}: decoder accepted bytes after ${ErrorClass.name}`);
            } catch (again) {
              if (!(again instanceof ErrorClass)) report.unexpected.push(`#${i} (after failure): ${String(again)}`);
            }
          } else {
            report.unexpected.push(`#${i}: ${(err as Error)?.stack ?? String(err)}`);
            failed = true;
          }
          break;
        }
      }
      runs.push({ items, failed, idle: decoder.idle });
    }
    report.inputs++;
    const [whole, split] = runs as [(typeof runs)[0], (typeof runs)[0]];
    if (whole.failed) report.decodeErrors++;
    report.emitted += whole.items.length;
    try {
      assert.deepStrictEqual({ items: whole.items, failed: whole.failed }, reference);
      assert.deepStrictEqual(split, whole);
    } catch (err) {
      report.mismatches.push(`#${i} (${input.length} bytes, head ${input.subarray(0, 24).toString('hex')}): ${(err as Error).message.slice(0, 600)}`);
    }
  }
  return report;
}

/**
 * Runs `runFuzz` in a worker thread; rejects if it has not finished within
 * `timeoutMs` (a decoder stuck in a loop), after terminating the worker.
 */
export function fuzzInWorker(target: FuzzTarget, seed: number, count: number, timeoutMs: number): Promise<FuzzReport> {
  // tsx's --import hooks do not reach a worker's entry module on Node 20: register them inside it.
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const code = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(import.meta.url)}); })`;
  const worker = new Worker(code, { eval: true, workerData: { wsfpmFuzz: { target, seed, count } } });
  return new Promise<FuzzReport>((resolve, reject) => {
    const timer = setTimeout(() => {
      void worker.terminate();
      reject(new Error(`${target} fuzz did not finish within ${timeoutMs} ms: a decoder hangs`));
    }, timeoutMs);
    worker.once('message', (report: FuzzReport) => {
      clearTimeout(timer);
      void worker.terminate();
      resolve(report);
    });
    worker.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    worker.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`fuzz worker exited with code ${code} before reporting`));
    });
  });
}

// Worker entry: only when this module is loaded by fuzzInWorker.
const job = !isMainThread ? (workerData as { wsfpmFuzz?: { target: FuzzTarget; seed: number; count: number } } | null)?.wsfpmFuzz : undefined;
if (job && parentPort) parentPort.postMessage(runFuzz(job.target, job.seed, job.count));
