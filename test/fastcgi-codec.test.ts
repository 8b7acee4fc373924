/**
 * FastCGI record codec (src/fastcgi/records.ts, decoder.ts) and the CGI
 * header block parser (cgi-headers.ts). Expected bytes are written out by
 * hand from the FastCGI 1.0 spec (header: version, type, requestId u16 BE,
 * contentLength u16 BE, paddingLength, reserved; name-value lengths 1 byte
 * below 128, else 4 bytes BE with the top bit set), never produced by the
 * encoder under test. Every decoder input is fed whole, byte by byte and in
 * seeded random chunkings, and must give identical results.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CgiHeaderError, CgiHeaderParser, type CgiHead } from '../src/fastcgi/cgi-headers.ts';
import { FcgiDecodeError, RecordDecoder } from '../src/fastcgi/decoder.ts';
import {
  CHUNK,
  HEADER_LEN,
  MAX_CONTENT,
  RecordType,
  VERSION,
  decodePairs,
  encodeBeginRequest,
  encodePairs,
  encodeRecord,
  endOfStream,
  recordHeader,
  streamRecords,
  streamRecordsOf,
} from '../src/fastcgi/records.ts';
import { feedDecoder, fuzzInWorker, hex, prng, randInt, sameForAllChunkings, toHex, type Outcome } from './helpers/bytes.ts';

interface Rec {
  type: number;
  requestId: number;
  content: Buffer;
}

/** Decodes `chunks`, copying each record's content on arrival. */
function decode(chunks: Buffer[]): Outcome<Rec> {
  return feedDecoder<Rec>(chunks, (emit) => new RecordDecoder((r) => emit({ type: r.type, requestId: r.requestId, content: Buffer.from(r.content) })));
}

/** Decodes `bytes` in every chunking, asserts they agree, returns the outcome. */
function decodeAll(bytes: Buffer): Outcome<Rec> {
  return sameForAllChunkings(bytes, decode);
}

const rec = (type: number, requestId: number, content: Buffer | string = Buffer.alloc(0)): Rec => ({
  type,
  requestId,
  content: typeof content === 'string' ? hex(content) : content,
});

/** A recognisable, non-constant byte pattern. */
const pattern = (n: number, salt = 0): Buffer => {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + salt + (i >> 8)) & 0xff;
  return b;
};

describe('record constants', () => {
  test('match the spec', () => {
    assert.equal(VERSION, 1);
    assert.equal(HEADER_LEN, 8);
    assert.equal(MAX_CONTENT, 65535);
    assert.equal(CHUNK, 65528);
    assert.equal(CHUNK % 8, 0);
    assert.deepEqual(
      [RecordType.BeginRequest, RecordType.AbortRequest, RecordType.EndRequest, RecordType.Params, RecordType.Stdin, RecordType.Stdout, RecordType.Stderr, RecordType.Data, RecordType.GetValues, RecordType.GetValuesResult, RecordType.UnknownType],
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
    );
  });
});

describe('record encoders (golden bytes)', () => {
  test('recordHeader lays out version, type, id, length, padding, reserved', () => {
    assert.equal(toHex(recordHeader(RecordType.Stdin, 0x1234, 0xabcd, 0x07)), '01 05 12 34 ab cd 07 00');
    assert.equal(toHex(recordHeader(RecordType.Params, 0xffff, 0, 0)), '01 04 ff ff 00 00 00 00');
    assert.equal(toHex(recordHeader(RecordType.Stdout, 0, 0xffff, 0xff)), '01 06 00 00 ff ff ff 00');
  });

  test('recordHeader rejects ids and lengths that do not fit 16 bits', () => {
    assert.throws(() => recordHeader(RecordType.Stdin, 0x10000, 0), RangeError);
    assert.throws(() => recordHeader(RecordType.Stdin, 1, 0x10000), RangeError);
  });

  test('empty record: header only, no padding', () => {
    assert.deepEqual(encodeRecord(RecordType.Stdin, 1), hex('01 05 00 01 00 00 00 00'));
    assert.deepEqual(encodeRecord(RecordType.AbortRequest, 7, Buffer.alloc(0)), hex('01 02 00 07 00 00 00 00'));
  });

  test('content is padded with zeros to a multiple of 8', () => {
    // "hello" = 68 65 6c 6c 6f: 5 bytes, padding 3
    assert.deepEqual(encodeRecord(RecordType.Stdout, 1, Buffer.from('hello')), hex('01 06 00 01 00 05 03 00 | 68 65 6c 6c 6f | 00 00 00'));
    // 1 byte → padding 7
    assert.deepEqual(encodeRecord(RecordType.Stdin, 2, hex('ff')), hex('01 05 00 02 00 01 07 00 | ff | 00 00 00 00 00 00 00'));
    // 8 bytes → no padding
    assert.deepEqual(encodeRecord(RecordType.Data, 3, hex('00 01 02 03 04 05 06 07')), hex('01 08 00 03 00 08 00 00 | 00 01 02 03 04 05 06 07'));
    // 9 bytes → padding 7
    assert.deepEqual(encodeRecord(RecordType.Data, 3, hex('00 01 02 03 04 05 06 07 08')), hex('01 08 00 03 00 09 07 00 | 00 01 02 03 04 05 06 07 08 | 00 00 00 00 00 00 00'));
  });

  test('accepts a plain Uint8Array as content', () => {
    assert.deepEqual(encodeRecord(RecordType.Stdin, 1, new Uint8Array([0x61, 0x62])), hex('01 05 00 01 00 02 06 00 | 61 62 | 00 00 00 00 00 00'));
  });

  test('65535-byte content (the maximum): length ff ff, padding 1', () => {
    const content = pattern(65535);
    const out = encodeRecord(RecordType.Stdout, 1, content);
    assert.equal(out.length, 8 + 65535 + 1);
    assert.deepEqual(out.subarray(0, 8), hex('01 06 00 01 ff ff 01 00'));
    assert.deepEqual(out.subarray(8, 8 + 65535), content);
    assert.equal(out[out.length - 1], 0);
  });

  test('65528-byte content (CHUNK): length ff f8, no padding', () => {
    const content = pattern(65528);
    const out = encodeRecord(RecordType.Stdin, 1, content);
    assert.equal(out.length, 8 + 65528);
    assert.deepEqual(out.subarray(0, 8), hex('01 05 00 01 ff f8 00 00'));
    assert.deepEqual(out.subarray(8), content);
  });

  test('65536-byte content is refused', () => {
    assert.throws(() => encodeRecord(RecordType.Stdin, 1, Buffer.alloc(65536)), { name: 'RangeError', message: /65536 bytes exceeds 65535/ });
  });

  test('BEGIN_REQUEST: role RESPONDER, flags, 5 reserved bytes', () => {
    assert.deepEqual(encodeBeginRequest(1), hex('01 01 00 01 00 08 00 00 | 00 01 00 00 00 00 00 00'));
    assert.deepEqual(encodeBeginRequest(1, true), hex('01 01 00 01 00 08 00 00 | 00 01 01 00 00 00 00 00'));
    assert.deepEqual(encodeBeginRequest(0x0102), hex('01 01 01 02 00 08 00 00 | 00 01 00 00 00 00 00 00'));
  });

  test('endOfStream: an empty record of the given type', () => {
    assert.deepEqual(endOfStream(RecordType.Params, 1), hex('01 04 00 01 00 00 00 00'));
    assert.deepEqual(endOfStream(RecordType.Stdin, 0xbeef), hex('01 05 be ef 00 00 00 00'));
  });

  test('GET_VALUES management record (request id 0)', () => {
    // FCGI_MPXS_CONNS: 15-byte name, empty value → content 0f 00 + name = 17 bytes, padding 7
    const expected = hex('01 09 00 00 00 11 07 00 | 0f 00 | 46 43 47 49 5f 4d 50 58 53 5f 43 4f 4e 4e 53 | 00 00 00 00 00 00 00');
    assert.deepEqual(encodeRecord(RecordType.GetValues, 0, encodePairs([['FCGI_MPXS_CONNS', '']])), expected);
  });
});

describe('streamRecords', () => {
  test('empty content: no records (the end-of-stream record is separate)', () => {
    assert.deepEqual(streamRecords(RecordType.Stdin, 1, Buffer.alloc(0)), []);
  });

  test('small content: header, the caller\'s bytes, zero padding', () => {
    const content = Buffer.from('abc');
    const out = streamRecords(RecordType.Stdin, 1, content);
    assert.equal(out.length, 3);
    assert.deepEqual(out[0], hex('01 05 00 01 00 03 05 00'));
    assert.deepEqual(out[1], hex('61 62 63'));
    assert.deepEqual(out[2], hex('00 00 00 00 00'));
    assert.equal(out[1]!.buffer, content.buffer, 'payload slice is a view, not a copy');
  });

  test('exactly 65528 bytes: one record, no padding buffer', () => {
    const content = pattern(65528);
    const out = streamRecords(RecordType.Params, 3, content);
    assert.equal(out.length, 2);
    assert.deepEqual(out[0], hex('01 04 00 03 ff f8 00 00'));
    assert.equal(out[1]!.length, 65528);
    assert.equal(out[1]!.buffer, content.buffer);
  });

  test('65535 bytes: 65528 + 7 (7 gets padding 1)', () => {
    const content = pattern(65535);
    const out = streamRecords(RecordType.Stdin, 1, content);
    assert.deepEqual(out.map((b) => b.length), [8, 65528, 8, 7, 1]);
    assert.deepEqual(out[0], hex('01 05 00 01 ff f8 00 00'));
    assert.deepEqual(out[2], hex('01 05 00 01 00 07 01 00'));
    assert.deepEqual(out[3], content.subarray(65528));
    assert.deepEqual(out[4], hex('00'));
  });

  test('200 KiB: three full records of 65528 and one of 8216, all views', () => {
    const content = pattern(200 * 1024, 5);
    const out = streamRecords(RecordType.Stdout, 1, content);
    assert.deepEqual(out.map((b) => b.length), [8, 65528, 8, 65528, 8, 65528, 8, 8216]);
    for (const i of [0, 2, 4]) assert.deepEqual(out[i], hex('01 06 00 01 ff f8 00 00'));
    assert.deepEqual(out[6], hex('01 06 00 01 20 18 00 00')); // 8216 = 0x2018, a multiple of 8
    for (const i of [1, 3, 5, 7]) assert.equal(out[i]!.buffer, content.buffer);
    assert.deepEqual(Buffer.concat([out[1]!, out[3]!, out[5]!, out[7]!]), content);
  });

  test('a Uint8Array view with an offset is sliced without copying', () => {
    const backing = new Uint8Array(20).map((_, i) => i);
    const view = backing.subarray(4, 14); // 04..0d
    const out = streamRecords(RecordType.Stdin, 1, view);
    assert.equal(out.length, 3);
    assert.deepEqual(out[0], hex('01 05 00 01 00 0a 06 00'));
    assert.deepEqual(out[1], hex('04 05 06 07 08 09 0a 0b 0c 0d'));
    assert.equal(out[1]!.buffer, backing.buffer);
    assert.equal(out[1]!.byteOffset, 4);
  });
});

describe('name-value pairs', () => {
  test('1-byte lengths', () => {
    assert.deepEqual(encodePairs([['A', 'b']]), hex('01 01 41 62'));
    assert.deepEqual(encodePairs([['', '']]), hex('00 00'));
    assert.deepEqual(encodePairs([['QUERY_STRING', '']]), hex('0c 00 51 55 45 52 59 5f 53 54 52 49 4e 47'));
    assert.deepEqual(encodePairs([]), Buffer.alloc(0));
    assert.deepEqual(encodePairs([['A', 'b'], ['C', 'de']]), hex('01 01 41 62 | 01 02 43 64 65'));
  });

  test('127-byte name and value: 1-byte lengths 7f', () => {
    const n = 'n'.repeat(127);
    const v = 'v'.repeat(127);
    const out = encodePairs([[n, v]]);
    assert.deepEqual(out.subarray(0, 2), hex('7f 7f'));
    assert.equal(out.length, 2 + 127 + 127);
    assert.deepEqual(decodePairs(out), [[n, v]]);
  });

  test('128-byte name and value: 4-byte lengths 80 00 00 80', () => {
    const n = 'n'.repeat(128);
    const v = 'v'.repeat(128);
    const out = encodePairs([[n, v]]);
    assert.deepEqual(out.subarray(0, 8), hex('80 00 00 80 | 80 00 00 80'));
    assert.equal(out.length, 8 + 128 + 128);
    assert.deepEqual(decodePairs(out), [[n, v]]);
  });

  test('mixed: 127-byte name with 128-byte value and the reverse', () => {
    const a = encodePairs([['x'.repeat(127), 'y'.repeat(128)]]);
    assert.deepEqual(a.subarray(0, 5), hex('7f | 80 00 00 80'));
    const b = encodePairs([['x'.repeat(128), 'y'.repeat(127)]]);
    assert.deepEqual(b.subarray(0, 5), hex('80 00 00 80 | 7f'));
    assert.deepEqual(decodePairs(Buffer.concat([a, b])), [
      ['x'.repeat(127), 'y'.repeat(128)],
      ['x'.repeat(128), 'y'.repeat(127)],
    ]);
  });

  test('long lengths use all 31 bits', () => {
    const v = 'z'.repeat(0x12345);
    const out = encodePairs([['K', v]]);
    assert.deepEqual(out.subarray(0, 6), hex('01 | 80 01 23 45 | 4b'));
    assert.deepEqual(decodePairs(out), [['K', v]]);
  });

  test('lengths count UTF-8 bytes, not characters', () => {
    // é = c3 a9, € = e2 82 ac, 𝄞 = f0 9d 84 9e
    assert.deepEqual(encodePairs([['é', '€']]), hex('02 03 | c3 a9 | e2 82 ac'));
    assert.deepEqual(encodePairs([['𝄞', '']]), hex('04 00 | f0 9d 84 9e'));
    // 63 × é + "a" = 127 bytes (1-byte length); 64 × é = 128 bytes (4-byte length) though only 64 characters
    const n127 = 'é'.repeat(63) + 'a';
    const n128 = 'é'.repeat(64);
    assert.deepEqual(encodePairs([[n127, '']]).subarray(0, 2), hex('7f 00'));
    assert.deepEqual(encodePairs([[n128, '']]).subarray(0, 5), hex('80 00 00 80 | 00'));
    assert.deepEqual(decodePairs(encodePairs([[n127, n128], ['€', 'x']])), [[n127, n128], ['€', 'x']]);
  });

  test('decodePairs reads hand-written bytes, including non-canonical 4-byte short lengths', () => {
    assert.deepEqual(decodePairs(hex('01 01 41 62 | 80 00 00 01 | 00 | 43')), [['A', 'b'], ['C', '']]);
    assert.deepEqual(decodePairs(hex('02 03 c3 a9 e2 82 ac')), [['é', '€']]);
    assert.deepEqual(decodePairs(Buffer.alloc(0)), []);
  });

  test('decodePairs honours the byteOffset of a view', () => {
    const backing = hex('ff ff ff | 01 01 41 62 | ee ee');
    const view = new Uint8Array(backing.buffer, backing.byteOffset + 3, 4);
    assert.deepEqual(decodePairs(view), [['A', 'b']]);
  });

  test('truncated pairs throw RangeError', () => {
    for (const bad of [
      '01', // name length, no value length
      '80', // first byte of a 4-byte length
      '80 00 00', // 4-byte name length cut short
      '01 80 00 00', // 4-byte value length cut short
      '01 01 41', // value byte missing
      '02 00 41', // name cut short
      '80 00 00 80 | 00', // 128-byte name announced, none present
      '01 01 41 62 | 01', // a good pair, then a cut one
    ]) {
      assert.throws(() => decodePairs(hex(bad)), RangeError, bad);
    }
    const announced128 = Buffer.concat([hex('80 00 00 80 | 00'), Buffer.alloc(127, 0x61)]);
    assert.throws(() => decodePairs(announced128), RangeError);
  });

  test('seeded round trip of random pairs', () => {
    const rng = prng(42);
    const alphabet = ['a', 'Z', '_', '0', 'é', '€', '𝄞', ' ', '=', '\u0000'];
    const str = (n: number): string => Array.from({ length: n }, () => alphabet[randInt(rng, 0, alphabet.length - 1)]).join('');
    for (let i = 0; i < 200; i++) {
      const pairs: Array<[string, string]> = Array.from({ length: randInt(rng, 0, 5) }, () => [str(randInt(rng, 0, 70)), str(randInt(rng, 0, 140))]);
      assert.deepEqual(decodePairs(encodePairs(pairs)), pairs);
    }
  });
});

describe('RecordDecoder', () => {
  test('empty input: nothing, idle', () => {
    const out = decode([]);
    assert.deepEqual(out, { items: [], error: null, staysFailed: null, idle: true });
    const d = new RecordDecoder(() => assert.fail('no record expected'));
    d.push(Buffer.alloc(0));
    assert.equal(d.idle, true);
  });

  test('empty records are emitted with empty content', () => {
    const out = decodeAll(hex('01 06 00 01 00 00 00 00 | 01 07 00 01 00 00 00 00 | 01 05 ff ff 00 00 00 00'));
    assert.deepEqual(out.items, [rec(6, 1), rec(7, 1), rec(5, 0xffff)]);
    assert.equal(out.error, null);
    assert.equal(out.idle, true);
  });

  test('a single small record with padding', () => {
    const out = decodeAll(hex('01 06 00 01 00 05 03 00 | 68 65 6c 6c 6f | 00 00 00'));
    assert.deepEqual(out.items, [rec(6, 1, '68 65 6c 6c 6f')]);
    assert.equal(out.idle, true);
  });

  test('padding bytes are skipped, even when they look like a header', () => {
    // content "ab", 8 bytes of padding that happen to spell an empty STDOUT header, then STDERR "c"
    const out = decodeAll(hex('01 06 00 01 00 02 08 00 | 61 62 | 01 06 00 01 00 00 00 00 | 01 07 00 01 00 01 07 00 | 63 | aa aa aa aa aa aa aa'));
    assert.deepEqual(out.items, [rec(6, 1, '61 62'), rec(7, 1, '63')]);
  });

  test('an empty record with padding, and the maximum padding of 255', () => {
    const bytes = Buffer.concat([
      hex('01 06 00 01 00 00 05 00 | 01 02 03 04 05'), // empty content, padding 5
      hex('01 06 00 01 00 01 ff 00 | 7a'), // 1 byte, padding 255
      Buffer.alloc(255, 0x01),
      hex('01 03 00 01 00 08 00 00 | 00 00 00 00 00 00 00 00'),
    ]);
    const out = decodeAll(bytes);
    assert.deepEqual(out.items, [rec(6, 1), rec(6, 1, '7a'), rec(3, 1, '00 00 00 00 00 00 00 00')]);
    assert.equal(out.idle, true);
  });

  test('a typical php-fpm response: STDOUT, STDERR, end of STDOUT, END_REQUEST', () => {
    const bytes = hex(`
      01 06 00 01 00 0f 01 00 | 53 74 61 74 75 73 3a 20 31 30 31 0d 0a 0d 0a | 00
      01 07 00 01 00 05 03 00 | 6f 6f 70 73 0a | 00 00 00
      01 06 00 01 00 00 00 00
      01 03 00 01 00 08 00 00 | 00 00 00 ff 00 00 00 00`);
    const out = decodeAll(bytes);
    assert.equal(out.error, null);
    assert.deepEqual(out.items.map((r) => r.type), [RecordType.Stdout, RecordType.Stderr, RecordType.Stdout, RecordType.EndRequest]);
    assert.equal(out.items[0]!.content.toString('latin1'), 'Status: 101\r\n\r\n');
    assert.equal(out.items[1]!.content.toString(), 'oops\n');
    assert.equal(out.items[2]!.content.length, 0);
  });

  test('END_REQUEST body: appStatus u32 BE, protocolStatus, 3 reserved', () => {
    const cases: Array<[string, number, number]> = [
      ['00 00 00 00 | 00 | 00 00 00', 0, 0], // REQUEST_COMPLETE
      ['00 00 00 ff | 00 | 00 00 00', 255, 0],
      ['12 34 56 78 | 01 | 00 00 00', 0x12345678, 1], // CANT_MPX_CONN
      ['ff ff ff ff | 02 | 00 00 00', 0xffffffff, 2], // OVERLOADED
      ['00 00 00 01 | 03 | 00 00 00', 1, 3], // UNKNOWN_ROLE
    ];
    for (const [body, appStatus, protocolStatus] of cases) {
      const out = decodeAll(Buffer.concat([hex('01 03 00 01 00 08 00 00'), hex(body)]));
      assert.equal(out.items.length, 1);
      const r = out.items[0]!;
      assert.equal(r.type, RecordType.EndRequest);
      assert.equal(r.requestId, 1);
      assert.equal(r.content.length, 8);
      assert.equal(r.content.readUInt32BE(0), appStatus);
      assert.equal(r.content[4], protocolStatus);
    }
  });

  test('GET_VALUES_RESULT: management record whose content is name-value pairs', () => {
    // FCGI_MAX_CONNS=10, FCGI_MAX_REQS=50, FCGI_MPXS_CONNS=0: 18 + 17 + 18 = 53 = 0x35 bytes, padding 3
    const bytes = hex(`
      01 0a 00 00 00 35 03 00
      0e 02 46 43 47 49 5f 4d 41 58 5f 43 4f 4e 4e 53 31 30
      0d 02 46 43 47 49 5f 4d 41 58 5f 52 45 51 53 35 30
      0f 01 46 43 47 49 5f 4d 50 58 53 5f 43 4f 4e 4e 53 30
      00 00 00`);
    const out = decodeAll(bytes);
    assert.equal(out.items.length, 1);
    assert.equal(out.items[0]!.type, RecordType.GetValuesResult);
    assert.equal(out.items[0]!.requestId, 0);
    assert.deepEqual(decodePairs(out.items[0]!.content), [
      ['FCGI_MAX_CONNS', '10'],
      ['FCGI_MAX_REQS', '50'],
      ['FCGI_MPXS_CONNS', '0'],
    ]);
  });

  test('UNKNOWN_TYPE and undefined types are passed through', () => {
    const out = decodeAll(hex('01 0b 00 00 00 08 00 00 | 2a 00 00 00 00 00 00 00 | 01 ee 00 05 00 01 07 00 | 99 | 00 00 00 00 00 00 00'));
    assert.deepEqual(out.items, [rec(11, 0, '2a 00 00 00 00 00 00 00'), rec(0xee, 5, '99')]);
  });

  test('a record of exactly 65535 bytes (padding 1), followed by another', () => {
    const content = pattern(65535, 3);
    const bytes = Buffer.concat([hex('01 06 00 01 ff ff 01 00'), content, hex('00'), hex('01 06 00 01 00 00 00 00')]);
    const out = decodeAll(bytes);
    assert.equal(out.items.length, 2);
    assert.deepEqual(out.items[0], rec(6, 1, content));
    assert.deepEqual(out.items[1], rec(6, 1));
    assert.equal(out.idle, true);
  });

  test('a record of exactly 65528 bytes (no padding), followed by another', () => {
    const content = pattern(65528, 9);
    const bytes = Buffer.concat([hex('01 05 00 02 ff f8 00 00'), content, hex('01 05 00 02 00 00 00 00')]);
    const out = decodeAll(bytes);
    assert.deepEqual(out.items, [rec(5, 2, content), rec(5, 2)]);
  });

  test('a 200 KiB STDOUT stream split across records reassembles', () => {
    const payload = pattern(200 * 1024, 11);
    const bytes = Buffer.concat([
      ...streamRecords(RecordType.Stdout, 1, payload),
      hex('01 06 00 01 00 00 00 00'), // end of STDOUT
      hex('01 03 00 01 00 08 00 00 | 00 00 00 00 00 00 00 00'),
    ]);
    assert.equal(bytes.length, 4 * 8 + 200 * 1024 + 8 + 16);
    const out = decodeAll(bytes);
    assert.equal(out.error, null);
    assert.deepEqual(out.items.map((r) => [r.type, r.content.length]), [
      [6, 65528],
      [6, 65528],
      [6, 65528],
      [6, 8216],
      [6, 0],
      [3, 8],
    ]);
    const stdout = Buffer.concat(out.items.filter((r) => r.type === RecordType.Stdout).map((r) => r.content));
    assert.deepEqual(stdout, payload);
  });

  test('round trip of encodeRecord / streamRecords output with odd lengths', () => {
    const parts: Buffer[] = [];
    const expected: Rec[] = [];
    for (const [i, n] of [0, 1, 7, 8, 9, 127, 128, 1000, 65527, 65535].entries()) {
      const content = pattern(n, i);
      parts.push(encodeRecord(RecordType.Stdin, i + 1, content));
      expected.push(rec(RecordType.Stdin, i + 1, content));
    }
    const stream = pattern(65528 * 2 + 3, 99);
    parts.push(...streamRecords(RecordType.Params, 77, stream), endOfStream(RecordType.Params, 77));
    expected.push(rec(4, 77, stream.subarray(0, 65528)), rec(4, 77, stream.subarray(65528, 2 * 65528)), rec(4, 77, stream.subarray(2 * 65528)), rec(4, 77));
    assert.deepEqual(decodeAll(Buffer.concat(parts)).items, expected);
  });

  test('idle only between records', () => {
    const seen: number[] = [];
    const d = new RecordDecoder((r) => seen.push(r.content.length));
    assert.equal(d.idle, true);
    d.push(hex('01 06 00'));
    assert.equal(d.idle, false, 'partial header');
    d.push(hex('01 00 03 05 00 | 61 62'));
    assert.equal(d.idle, false, 'partial content');
    d.push(hex('63 | 00 00'));
    assert.deepEqual(seen, [3]);
    assert.equal(d.idle, false, 'partial padding');
    d.push(hex('00 00 00'));
    assert.equal(d.idle, true);
    d.push(hex('01 06 00 01 00 00 02 00'));
    assert.deepEqual(seen, [3, 0]);
    assert.equal(d.idle, false, 'empty record with padding still pending');
    d.push(hex('00 00'));
    assert.equal(d.idle, true);
  });

  test('content within one chunk is a view; content across chunks is a private copy', () => {
    const whole = hex('01 06 00 01 00 04 04 00 | 61 62 63 64 | 00 00 00 00');
    const views: Buffer[] = [];
    new RecordDecoder((r) => views.push(r.content)).push(whole);
    assert.equal(views[0]!.buffer, whole.buffer);
    assert.equal(views[0]!.toString(), 'abcd');

    // The caller reuses one scratch buffer for every push; spanning content must survive it.
    const content = pattern(40, 1);
    const bytes = Buffer.concat([hex('01 06 00 01 00 28 00 00'), content]);
    const got: Buffer[] = [];
    const d = new RecordDecoder((r) => got.push(r.content));
    const scratch = Buffer.alloc(6);
    for (let off = 0; off < bytes.length; off += 6) {
      const n = bytes.copy(scratch, 0, off, off + 6);
      d.push(scratch.subarray(0, n));
      scratch.fill(0xee);
    }
    assert.equal(got.length, 1);
    assert.deepEqual(got[0], content);
  });

  test('bad version: FcgiDecodeError after the good records, then stays failed', () => {
    for (const version of ['00', '02', 'ff']) {
      const bytes = hex(`01 06 00 01 00 01 07 00 | 61 | 00 00 00 00 00 00 00 | ${version} 06 00 01 00 00 00 00 | 01 06 00 01 00 00 00 00`);
      const out = decodeAll(bytes);
      assert.deepEqual(out.items, [rec(6, 1, '61')]);
      assert.deepEqual(out.error, { name: 'FcgiDecodeError', message: `unsupported FastCGI version ${parseInt(version, 16)}` });
      assert.equal(out.staysFailed, true);
      assert.equal(out.idle, false, 'a failed decoder is not a clean place to stop');
    }
  });

  test('after a failure every non-empty push throws FcgiDecodeError and emits nothing', () => {
    let emitted = 0;
    const d = new RecordDecoder(() => emitted++);
    assert.throws(() => d.push(hex('02 06 00 01 00 00 00 00')), FcgiDecodeError);
    for (let i = 0; i < 3; i++) {
      assert.throws(() => d.push(hex('01 06 00 01 00 00 00 00')), (err: unknown) => err instanceof FcgiDecodeError && /after a protocol error/.test(err.message));
    }
    assert.equal(emitted, 0);
    assert.equal(d.idle, false);
  });

  test('a bad version is detected only once the 8-byte header is complete', () => {
    const d = new RecordDecoder(() => {});
    d.push(hex('02 06 00 01 00 00 00')); // 7 bytes: not yet a header
    assert.throws(() => d.push(hex('00')), FcgiDecodeError);
  });

  test('a truncated stream leaves the decoder busy (not idle) in every chunking', () => {
    for (const cut of ['01 06', '01 06 00 01 00 03 05 00 | 61', '01 06 00 01 00 03 05 00 | 61 62 63 | 00']) {
      const out = decodeAll(hex(cut));
      assert.equal(out.error, null);
      assert.equal(out.idle, false, cut);
    }
  });

  test('fuzz: 2,000 random and mutated streams; only FcgiDecodeError escapes, decoder agrees with a reference parser, nothing hangs', async () => {
    const report = await fuzzInWorker('records', 0xf0cc, 2000, 60_000);
    assert.deepEqual(report.unexpected, []);
    assert.deepEqual(report.mismatches, []);
    assert.equal(report.inputs, 2000);
    assert.ok(report.decodeErrors > 100, `only ${report.decodeErrors} inputs hit a decode error`);
    assert.ok(report.emitted > 1000, `only ${report.emitted} records emitted`);
  });
});

describe('CgiHeaderParser', () => {
  interface Parsed {
    head: CgiHead | null;
    body: string;
    error: string | null;
  }

  /** Feeds chunks until the head is complete; the rest plus any later chunks are the body. */
  const parse = (maxBytes: number) => (chunks: Buffer[]): Parsed => {
    const p = new CgiHeaderParser(maxBytes);
    let head: CgiHead | null = null;
    const body: Buffer[] = [];
    try {
      for (const chunk of chunks) {
        if (head) {
          body.push(chunk);
          continue;
        }
        const r = p.push(chunk);
        if (r) {
          head = r.head;
          body.push(r.rest);
        }
      }
    } catch (err) {
      if (!(err instanceof CgiHeaderError)) throw err;
      return { head: null, body: '', error: err.message };
    }
    return { head, body: Buffer.concat(body).toString('latin1'), error: null };
  };
  const parseAll = (text: string | Buffer, maxBytes = 8192): Parsed =>
    sameForAllChunkings(typeof text === 'string' ? Buffer.from(text, 'latin1') : text, parse(maxBytes));

  test('Status 101 with CRLF; body follows untouched', () => {
    const out = parseAll('Status: 101 Switching Protocols\r\nX-Powered-By: PHP/8.3\r\nSec-WebSocket-Protocol: chat\r\n\r\n\x00\x00\x00\x00\x00');
    assert.deepEqual(out, {
      head: { status: 101, statusText: 'Switching Protocols', headers: [['X-Powered-By', 'PHP/8.3'], ['Sec-WebSocket-Protocol', 'chat']] },
      body: '\x00\x00\x00\x00\x00',
      error: null,
    });
  });

  test('bare LF line endings, and mixed endings', () => {
    assert.deepEqual(parseAll('Status: 403 Forbidden\nContent-type: text/html\n\nnope').head, {
      status: 403,
      statusText: 'Forbidden',
      headers: [['Content-type', 'text/html']],
    });
    assert.equal(parseAll('Status: 403 Forbidden\nContent-type: text/html\n\nnope').body, 'nope');
    const mixed = parseAll('A: 1\r\nB: 2\nC: 3\r\n\nbody\r\n\r\nmore');
    assert.deepEqual(mixed.head?.headers, [['A', '1'], ['B', '2'], ['C', '3']]);
    assert.equal(mixed.body, 'body\r\n\r\nmore');
  });

  test('no Status: 200; Location alone: 302; explicit Status wins over Location', () => {
    assert.deepEqual(parseAll('Content-Type: text/plain\r\n\r\n').head, { status: 200, statusText: '', headers: [['Content-Type', 'text/plain']] });
    assert.equal(parseAll('Location: /elsewhere\r\n\r\n').head?.status, 302);
    assert.equal(parseAll('location: /elsewhere\r\n\r\n').head?.status, 302);
    assert.equal(parseAll('Status: 201 Created\r\nLocation: /new\r\n\r\n').head?.status, 201);
  });

  test('Status is matched case-insensitively and not kept as a header', () => {
    assert.deepEqual(parseAll('status: 404\r\nX-A: b\r\n\r\n').head, { status: 404, statusText: '', headers: [['X-A', 'b']] });
    assert.deepEqual(parseAll('STATUS:503   Service Unavailable  \r\n\r\n').head, { status: 503, statusText: 'Service Unavailable', headers: [] });
  });

  test('repeated headers stay separate and in order; values are trimmed; colons in values kept', () => {
    const out = parseAll('Set-Cookie: a=1; Path=/\r\nX-Empty:\r\nSet-Cookie: b=2\r\nX-Pad:   spaced out   \r\nLink: <http://x/y>; rel=a\r\n\r\n');
    assert.deepEqual(out.head?.headers, [
      ['Set-Cookie', 'a=1; Path=/'],
      ['X-Empty', ''],
      ['Set-Cookie', 'b=2'],
      ['X-Pad', 'spaced out'],
      ['Link', '<http://x/y>; rel=a'],
    ]);
  });

  test('header bytes are kept as latin1, so UTF-8 values survive a round trip', () => {
    const raw = Buffer.concat([Buffer.from('X-Name: '), Buffer.from('café €', 'utf8'), Buffer.from('\r\n\r\n')]);
    const out = parseAll(raw);
    const value = out.head?.headers[0]?.[1] ?? '';
    assert.deepEqual(Buffer.from(value, 'latin1'), Buffer.from('café €', 'utf8'));
  });

  test('returns null until the block is complete', () => {
    const p = new CgiHeaderParser(1024);
    assert.equal(p.push(Buffer.from('Status: 200\r')), null);
    assert.equal(p.push(Buffer.from('\nA: b\r\n')), null);
    assert.equal(p.push(Buffer.from('\r')), null);
    const r = p.push(Buffer.from('\nbody'));
    assert.ok(r);
    assert.deepEqual(r.head, { status: 200, statusText: '', headers: [['A', 'b']] });
    assert.equal(r.rest.toString(), 'body');
  });

  test('malformed blocks throw CgiHeaderError in every chunking', () => {
    for (const [text, message] of [
      ['NoColonHere\r\n\r\n', /malformed header line/],
      [': value\r\n\r\n', /malformed header line/],
      ['Bad Name: x\r\n\r\n', /invalid header name/],
      [' Folded: x\r\n\r\n', /invalid header name/],
      ['X-A: b\r\n continued\r\n\r\n', /malformed header line|invalid header name/],
      ['Status: abc\r\n\r\n', /invalid Status/],
      ['Status: 20\r\n\r\n', /invalid Status/],
      ['Status: 2000\r\n\r\n', /invalid Status/],
      ['Status: 099\r\n\r\n', /invalid Status 99/],
      ['Status: 600\r\n\r\n', /invalid Status 600/],
      ['Status:\r\n\r\n', /invalid Status/],
    ] as const) {
      const out = parseAll(text);
      assert.equal(out.head, null, text);
      assert.match(out.error ?? '', message, text);
    }
  });

  test('Status bounds 100 and 599 are accepted', () => {
    assert.equal(parseAll('Status: 100\n\n').head?.status, 100);
    assert.equal(parseAll('Status: 599 Odd\n\n').head?.status, 599);
  });

  test('oversized block: CgiHeaderError when no terminator within maxBytes', () => {
    const out = parseAll('X-Long: ' + 'a'.repeat(100) + '\r\n\r\n', 64);
    assert.match(out.error ?? '', /header block larger than 64 bytes/);
    const p = new CgiHeaderParser(16);
    assert.equal(p.push(Buffer.from('X-A: 0123456789a')), null); // 16 bytes: at the limit, still waiting
    assert.equal(p.push(Buffer.from('bcd')), null); // up to 3 more may be a terminator still arriving
    assert.throws(() => p.push(Buffer.from('e')), CgiHeaderError);
  });

  test('a big body after a small block does not count against maxBytes', () => {
    const body = 'x'.repeat(10_000);
    const out = parseAll('A: b\r\n\r\n' + body, 64);
    assert.equal(out.error, null);
    assert.equal(out.body, body);
  });

  test('a block well inside the limit parses the same in every chunking', () => {
    // "A: b\r\n\r\n": headerEnd 5, 8 bytes with the terminator; maxBytes 8 leaves room for all of it.
    assert.deepEqual(parseAll('A: b\r\n\r\nX', 8).head?.headers, [['A', 'b']]);
    assert.deepEqual(parseAll('A: b\n\nX', 6).head?.headers, [['A', 'b']]);
  });

  // Regressions: results once depended on how STDOUT was chunked.
  test('an empty header block keeps the body\'s first bytes whatever the chunking', () => {
    assert.equal(parseAll('\n\nX').body, '\nX');
    assert.equal(parseAll('\r\n\r\nX').body, '\r\nX');
  });

  test('the maxBytes limit is the same whole and split (a partial terminator does not count)', () => {
    parseAll('A: b\n\nX', 4);
    parseAll('A: b\r\n\r\nX', 5);
  });
});

describe('streamRecordsOf', () => {
  test('a frame header and its payload travel in one unpadded record, the payload not copied', () => {
    const head = Buffer.from([0x01, 0, 0, 0, 3]);
    const payload = Buffer.from('abc');
    const out = streamRecordsOf(RecordType.Stdin, 1, [head, payload]);
    assert.deepEqual(out.map((b) => b.toString('hex')), ['0105000100080000', '0100000003', '616263']);
    assert.equal(out[2], payload, 'the payload buffer itself is passed on');
  });

  test('records span parts freely at the 65528-byte chunk size; empty parts make no record', () => {
    const a = Buffer.alloc(65_530, 1);
    const b = Buffer.alloc(10, 2);
    const out = streamRecordsOf(RecordType.Stdin, 1, [Buffer.alloc(0), a, b]);
    const bytes = Buffer.concat(out);
    // Record 1: 65528 bytes of a; record 2: the last 2 bytes of a and all of b.
    assert.equal(bytes.readUInt16BE(4), 65_528);
    assert.equal(bytes[6], 0);
    const second = 8 + 65_528;
    assert.equal(bytes.readUInt16BE(second + 4), 12);
    assert.deepEqual([...bytes.subarray(second + 8)], [1, 1, ...Array(10).fill(2)]);
    assert.deepEqual(streamRecordsOf(RecordType.Stdin, 1, [Buffer.alloc(0)]), []);
  });
});

describe('RecordDecoder stream types', () => {
  test('STDOUT content arrives in pieces that join to the content, whole or byte by byte; other records stay whole', () => {
    // STDOUT "hello" padded to 8, STDERR "e!", empty STDOUT (end of stream).
    const input = hex('01 06 00 01 00 05 03 00 68 65 6c 6c 6f 00 00 00  01 07 00 01 00 02 00 00 65 21  01 06 00 01 00 00 00 00');
    for (const step of [input.length, 1, 3]) {
      const pieces: Buffer[] = [];
      const records: Array<[number, string]> = [];
      const d = new RecordDecoder((r) => records.push([r.type, r.content.toString('latin1')]), {
        types: new Set([RecordType.Stdout]),
        onPiece: (type, id, piece) => {
          assert.equal(type, RecordType.Stdout);
          assert.equal(id, 1);
          pieces.push(Buffer.from(piece));
        },
      });
      for (let i = 0; i < input.length; i += step) d.push(input.subarray(i, i + step));
      assert.equal(Buffer.concat(pieces).toString('latin1'), 'hello', `step ${step}`);
      assert.deepEqual(records, [[RecordType.Stderr, 'e!'], [RecordType.Stdout, '']], `step ${step}`);
      assert.ok(d.idle);
    }
  });
});
