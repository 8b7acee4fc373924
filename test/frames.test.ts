/**
 * The daemon↔PHP frame codec (src/protocol/frames.ts, docs/protocol.md):
 * [u8 type][u32 BE length][payload]. Expected bytes are written by hand from
 * the document. Every decoder input is fed whole, byte by byte and in seeded
 * random chunkings, and must give identical results.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RecordDecoder } from '../src/fastcgi/decoder.ts';
import { RecordType, streamRecords } from '../src/fastcgi/records.ts';
import {
  FRAME_HEADER_LEN,
  FrameDecoder,
  FrameError,
  FrameType,
  PROTOCOL_VERSION,
  closePayload,
  encodeFrame,
  frameHeader,
  parseClosePayload,
} from '../src/protocol/frames.ts';
import { feedDecoder, fuzzInWorker, hex, sameForAllChunkings, toHex, type Outcome } from './helpers/bytes.ts';
import { parseOpenPayload } from '../src/protocol/event-frames.ts';

interface F {
  type: number;
  payload: Buffer;
}

const frame = (type: number, payload: Buffer | string = ''): F => ({ type, payload: typeof payload === 'string' ? hex(payload) : payload });

/** Decodes `bytes` in every chunking with the given limit; asserts they agree. */
function decodeAll(bytes: Buffer, maxPayload = 1 << 20): Outcome<F> {
  return sameForAllChunkings(bytes, (chunks) =>
    feedDecoder<F>(chunks, (emit) => new FrameDecoder(maxPayload, (f) => emit({ type: f.type, payload: Buffer.from(f.payload) }))),
  );
}

const pattern = (n: number, salt = 0): Buffer => {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 13 + salt + (i >> 9)) & 0xff;
  return b;
};

describe('frame constants', () => {
  test('match docs/protocol.md', () => {
    assert.equal(PROTOCOL_VERSION, 1);
    assert.equal(FRAME_HEADER_LEN, 5);
    assert.deepEqual({ ...FrameType }, {
      Open: 0x00, Text: 0x01, Binary: 0x02, Close: 0x08,
      Subscribe: 0x10, Unsubscribe: 0x11, Publish: 0x12, Send: 0x13, Channel: 0x14, Timer: 0x20, Tick: 0x21, Wake: 0x22, Meta: 0x30,
    });
    assert.ok(Object.isFrozen(FrameType));
  });
});

describe('frame encoders (golden bytes)', () => {
  test('frameHeader: type then big-endian u32 length', () => {
    assert.equal(toHex(frameHeader(0x01, 2)), '01 00 00 00 02');
    assert.equal(toHex(frameHeader(0x02, 0x01020304)), '02 01 02 03 04');
    assert.equal(toHex(frameHeader(0x08, 0xffffffff)), '08 ff ff ff ff');
    assert.equal(toHex(frameHeader(0x00, 0)), '00 00 00 00 00');
  });

  test('frameHeader refuses lengths beyond u32', () => {
    assert.throws(() => frameHeader(0x02, 2 ** 32), RangeError);
    assert.throws(() => frameHeader(0x02, -1), RangeError);
  });

  test('encodeFrame for every type; the payload buffer is passed through, not copied', () => {
    const hi = Buffer.from('hi');
    const text = encodeFrame(FrameType.Text, hi);
    assert.deepEqual(text, [hex('01 00 00 00 02'), hex('68 69')]);
    assert.equal(text[1], hi);
    assert.deepEqual(encodeFrame(FrameType.Binary, hex('00 ff 10')), [hex('02 00 00 00 03'), hex('00 ff 10')]);
    assert.deepEqual(encodeFrame(FrameType.Close, hex('03 e8')), [hex('08 00 00 00 02'), hex('03 e8')]);
    assert.deepEqual(encodeFrame(0x10, hex('aa')), [hex('10 00 00 00 01'), hex('aa')]);
  });

  test('zero-length frames are a single 5-byte header', () => {
    assert.deepEqual(encodeFrame(FrameType.Open, Buffer.alloc(0)), [hex('00 00 00 00 00')]);
    assert.deepEqual(encodeFrame(FrameType.Text, Buffer.alloc(0)), [hex('01 00 00 00 00')]);
    assert.deepEqual(encodeFrame(FrameType.Binary, Buffer.alloc(0)), [hex('02 00 00 00 00')]);
    assert.deepEqual(encodeFrame(FrameType.Close, Buffer.alloc(0)), [hex('08 00 00 00 00')]);
  });

  test('lengths above 16 bits', () => {
    const payload = Buffer.alloc(0x012345, 0x5a);
    const [h, p] = encodeFrame(FrameType.Binary, payload);
    assert.deepEqual(h, hex('02 00 01 23 45'));
    assert.equal(p, payload);
  });
});

describe('close payloads', () => {
  test('closePayload: u16 BE code then UTF-8 reason', () => {
    assert.deepEqual(closePayload(1000, 'bye'), hex('03 e8 | 62 79 65'));
    assert.deepEqual(closePayload(1000, ''), hex('03 e8'));
    assert.deepEqual(closePayload(1011, ''), hex('03 f3'));
    assert.deepEqual(closePayload(4000, 'é€'), hex('0f a0 | c3 a9 e2 82 ac'));
    assert.deepEqual(closePayload(65535, ''), hex('ff ff'));
    assert.throws(() => closePayload(65536, ''), RangeError);
  });

  test('parseClosePayload: empty means 1005 (no code)', () => {
    assert.deepEqual(parseClosePayload(Buffer.alloc(0)), { code: 1005, reason: '' });
  });

  test('parseClosePayload: a 1-byte payload is a FrameError', () => {
    for (const b of ['03', '00', 'ff']) {
      assert.throws(() => parseClosePayload(hex(b)), (err: unknown) => err instanceof FrameError && err.message === 'close payload of 1 byte');
    }
  });

  test('parseClosePayload: code only, code and reason, UTF-8 reasons', () => {
    assert.deepEqual(parseClosePayload(hex('03 e8')), { code: 1000, reason: '' });
    assert.deepEqual(parseClosePayload(hex('03 e8 62 79 65')), { code: 1000, reason: 'bye' });
    assert.deepEqual(parseClosePayload(hex('0f a0 c3 a9 e2 82 ac')), { code: 4000, reason: 'é€' });
    assert.deepEqual(parseClosePayload(hex('ff ff')), { code: 65535, reason: '' });
  });

  test('round trip, including the largest reason the protocol allows (123 bytes)', () => {
    for (const [code, reason] of [
      [1000, ''],
      [1001, 'going away'],
      [3000, 'x'.repeat(123)],
      [4999, '€'.repeat(41)], // 123 bytes
      [1011, 'internal error: 𝄞'],
    ] as const) {
      assert.deepEqual(parseClosePayload(closePayload(code, reason)), { code, reason });
    }
    assert.equal(closePayload(4999, '€'.repeat(41)).length, 2 + 123);
  });

  test('parses a payload that is a view into a larger buffer', () => {
    const backing = hex('ff ff | 03 e9 6f 6b | ff');
    assert.deepEqual(parseClosePayload(backing.subarray(2, 6)), { code: 1001, reason: 'ok' });
  });
});

describe('FrameDecoder', () => {
  test('nothing in, nothing out, idle', () => {
    assert.deepEqual(decodeAll(Buffer.alloc(0)), { items: [], error: null, staysFailed: null, idle: true });
  });

  test('every type, hand-written bytes', () => {
    const bytes = hex(`
      00 00 00 00 00
      01 00 00 00 02 | 68 69
      02 00 00 00 03 | 00 01 ff
      08 00 00 00 05 | 03 e8 62 79 65`);
    const out = decodeAll(bytes);
    assert.deepEqual(out.items, [frame(0x00), frame(0x01, '68 69'), frame(0x02, '00 01 ff'), frame(0x08, '03 e8 62 79 65')]);
    assert.equal(out.error, null);
    assert.equal(out.idle, true);
    assert.deepEqual(parseClosePayload(out.items[3]!.payload), { code: 1000, reason: 'bye' });
  });

  test('types the decoder does not know are passed on (the bridge decides)', () => {
    const out = decodeAll(hex('10 00 00 00 01 | aa | 2f 00 00 00 00 | ff 00 00 00 02 | bb cc'));
    assert.deepEqual(out.items, [frame(0x10, 'aa'), frame(0x2f), frame(0xff, 'bb cc')]);
  });

  test('zero-length frames of every type, back to back', () => {
    const out = decodeAll(hex('00 00 00 00 00 | 01 00 00 00 00 | 02 00 00 00 00 | 08 00 00 00 00'));
    assert.deepEqual(out.items, [frame(0), frame(1), frame(2), frame(8)]);
    assert.equal(out.idle, true);
  });

  test('a frame exactly at the limit is accepted', () => {
    const out = decodeAll(hex('02 00 00 00 04 | 01 02 03 04 | 01 00 00 00 00'), 4);
    assert.deepEqual(out.items, [frame(2, '01 02 03 04'), frame(1)]);
    assert.equal(out.error, null);
  });

  test('one byte over the limit: FrameError after the earlier frames, and the decoder stays failed', () => {
    const out = decodeAll(hex('01 00 00 00 01 | 41 | 02 00 00 00 05 | 01 02 03 04 05 | 01 00 00 00 00'), 4);
    assert.deepEqual(out.items, [frame(1, '41')]);
    assert.deepEqual(out.error, { name: 'FrameError', message: 'frame of 5 bytes exceeds the 4-byte limit' });
    assert.equal(out.staysFailed, true);
    assert.equal(out.idle, false);
  });

  test('limit 0 allows only empty frames', () => {
    assert.deepEqual(decodeAll(hex('00 00 00 00 00 | 08 00 00 00 00'), 0).items, [frame(0), frame(8)]);
    assert.equal(decodeAll(hex('01 00 00 00 01 | 41'), 0).error?.name, 'FrameError');
  });

  test('an oversized length fails as soon as the header is complete, before any payload', () => {
    const d = new FrameDecoder(1 << 20, () => assert.fail('no frame expected'));
    d.push(hex('02 ff ff ff'));
    assert.equal(d.idle, false);
    assert.throws(() => d.push(hex('ff')), (err: unknown) => err instanceof FrameError && /4294967295 bytes exceeds the 1048576-byte limit/.test(err.message));
    assert.throws(() => d.push(hex('01 00 00 00 00')), (err: unknown) => err instanceof FrameError && /after an error/.test(err.message));
    assert.equal(d.idle, false);
  });

  test('1 MiB frame (the default limit) exactly, then one over', () => {
    const max = 1 << 20;
    const payload = pattern(max, 7);
    const ok = decodeAll(Buffer.concat([hex('02 00 10 00 00'), payload, hex('01 00 00 00 00')]), max);
    assert.equal(ok.error, null);
    assert.equal(ok.items.length, 2);
    assert.deepEqual(ok.items[0], frame(2, payload));
    // The header alone decides: no need to send the megabyte behind it.
    const over = decodeAll(Buffer.concat([hex('02 00 10 00 01'), payload.subarray(0, 4096)]), max);
    assert.deepEqual(over.items, []);
    assert.equal(over.error?.message, 'frame of 1048577 bytes exceeds the 1048576-byte limit');
  });

  test('many frames in one chunk are all emitted, in order', () => {
    const parts: Buffer[] = [];
    const expected: F[] = [];
    for (let i = 0; i < 1000; i++) {
      const type = [0x00, 0x01, 0x02, 0x08][i % 4]!;
      const payload = pattern(i % 37, i);
      parts.push(...encodeFrame(type, payload));
      expected.push(frame(type, payload));
    }
    const bytes = Buffer.concat(parts);
    let calls = 0;
    new FrameDecoder(64, () => calls++).push(bytes);
    assert.equal(calls, 1000);
    assert.deepEqual(decodeAll(bytes, 64).items, expected);
  });

  test('idle only between frames', () => {
    const d = new FrameDecoder(100, () => {});
    assert.equal(d.idle, true);
    d.push(hex('01 00'));
    assert.equal(d.idle, false, 'partial header');
    d.push(hex('00 00 03 | 61'));
    assert.equal(d.idle, false, 'partial payload');
    d.push(hex('62 63'));
    assert.equal(d.idle, true);
    d.push(hex('00 00 00 00 00'));
    assert.equal(d.idle, true, 'after an empty frame');
    d.push(Buffer.alloc(0));
    assert.equal(d.idle, true);
  });

  test('a truncated stream is not idle, in every chunking', () => {
    for (const cut of ['01', '01 00 00 00', '01 00 00 00 02', '01 00 00 00 02 | 68']) {
      const out = decodeAll(hex(cut));
      assert.equal(out.error, null);
      assert.deepEqual(out.items, []);
      assert.equal(out.idle, false, cut);
    }
  });

  test('a payload within one chunk is a view of it; one across chunks is joined', () => {
    const chunk = hex('01 00 00 00 03 | 61 62 63');
    const seen: Buffer[] = [];
    new FrameDecoder(10, (f) => seen.push(f.payload)).push(chunk);
    assert.equal(seen[0]!.buffer, chunk.buffer);
    const d = new FrameDecoder(10, (f) => seen.push(f.payload));
    d.push(hex('02 00 00 00 04 | 01 02'));
    d.push(hex('03'));
    d.push(hex('04 | 01'));
    assert.deepEqual(seen[1], hex('01 02 03 04'));
  });

  test('frames are independent of FastCGI record boundaries', () => {
    // Frames totalling ~200 KiB → STDOUT records of 65528 bytes → RecordDecoder → FrameDecoder.
    const frames: F[] = [frame(0x00), frame(0x01, Buffer.from('héllo')), frame(0x02, pattern(150_000, 3)), frame(0x02, pattern(65_528, 4)), frame(0x08, hex('03 e8'))];
    const stream = Buffer.concat(frames.flatMap((f) => encodeFrame(f.type, f.payload)));
    const records = Buffer.concat(streamRecords(RecordType.Stdout, 1, stream));
    const out = sameForAllChunkings(records, (chunks) => {
      const got: F[] = [];
      const frameDecoder = new FrameDecoder(1 << 20, (f) => got.push({ type: f.type, payload: Buffer.from(f.payload) }));
      const recordDecoder = new RecordDecoder((r) => frameDecoder.push(r.content));
      for (const c of chunks) recordDecoder.push(c);
      return { got, idle: frameDecoder.idle && recordDecoder.idle };
    });
    assert.deepEqual(out, { got: frames, idle: true });
  });

  test('fuzz: 2,000 random and mutated streams; only FrameError escapes, decoder agrees with a reference parser, nothing hangs', async () => {
    const report = await fuzzInWorker('frames', 0xf4a3, 2000, 60_000);
    assert.deepEqual(report.unexpected, []);
    assert.deepEqual(report.mismatches, []);
    assert.equal(report.inputs, 2000);
    assert.ok(report.decodeErrors > 100, `only ${report.decodeErrors} inputs hit a FrameError`);
    assert.ok(report.emitted > 1000, `only ${report.emitted} frames emitted`);
  });
});

describe('OPEN payload: the mode a script chose (golden bytes)', () => {
  test('empty is bound mode; 01 + batch (u16 BE) is events mode, 0 read as 1', () => {
    assert.deepEqual(parseOpenPayload(Buffer.alloc(0)), { mode: 'bound' });
    assert.deepEqual(parseOpenPayload(hex('01 00 08')), { mode: 'events', batch: 8 });
    assert.deepEqual(parseOpenPayload(hex('01 00 00')), { mode: 'events', batch: 1 });
    assert.deepEqual(parseOpenPayload(hex('01 01 00')), { mode: 'events', batch: 256 });
  });

  test('an unknown mode, a wrong length or a batch over 256 is a FrameError', () => {
    for (const bad of ['02 00 01', '01 00', '01 00 01 00', '01 01 01', '00']) {
      assert.throws(() => parseOpenPayload(hex(bad)), FrameError, bad);
    }
  });
});
