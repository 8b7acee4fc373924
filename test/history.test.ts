/**
 * Channel history without sockets: the ring, recovery by offset and epoch,
 * the envelopes and the resume parameter, and the hub's delivery to a history
 * subscription (no duplicate, no gap, live messages behind a slow recovery).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HistoryRing, MemoryHistory, recoverFrom, type HistoryStore, type Position, type Recovery } from '../src/hub/history.ts';
import { messageEnvelope, noticeEnvelope, parseResume } from '../src/hub/envelope.ts';
import { Hub, type Member } from '../src/hub/hub.ts';

const b = (s: string): Buffer => Buffer.from(s);

describe('HistoryRing', () => {
  it('numbers messages 1, 2, 3 and keeps the last `size` of them', () => {
    const ring = new HistoryRing('e1', 3);
    for (const s of ['a', 'b', 'c', 'd', 'e']) ring.append(b(s), false, 0);
    assert.equal(ring.top, 5);
    assert.deepEqual(ring.entries().map((e) => [e.offset, e.data.toString()]), [[3, 'c'], [4, 'd'], [5, 'e']]);
  });

  it('expires by age from the oldest end', () => {
    const ring = new HistoryRing('e1', 10);
    ring.append(b('old'), false, 100);
    ring.append(b('new'), false, 200);
    ring.expire(150);
    assert.deepEqual(ring.entries().map((e) => e.offset), [2]);
    ring.expire(1_000);
    assert.equal(ring.length, 0);
    assert.equal(ring.top, 2);
  });

  it('copies what it keeps, so a reused buffer cannot change history', () => {
    const ring = new HistoryRing('e', 2);
    const buf = b('abc');
    ring.append(buf, false, 0);
    buf.write('xyz');
    assert.equal(ring.entries()[0]!.data.toString(), 'abc');
  });
});

describe('recoverFrom', () => {
  const entries = [3, 4, 5].map((offset) => ({ offset, at: offset * 10, data: b(`m${offset}`), binary: false }));
  const r = (since: Position | null, oldest = 0): Recovery => recoverFrom('E', 5, entries, since, oldest);

  it('gives exactly the entries after the offset, in order', () => {
    assert.deepEqual(r({ epoch: 'E', offset: 3 }).entries.map((e) => e.offset), [4, 5]);
    assert.equal(r({ epoch: 'E', offset: 2 }).lost, false);
    assert.deepEqual(r({ epoch: 'E', offset: 2 }).entries.map((e) => e.offset), [3, 4, 5]);
  });

  it('nothing missed is a recovery with no entries', () => {
    assert.deepEqual(r({ epoch: 'E', offset: 5 }), { epoch: 'E', offset: 5, entries: [], lost: false });
  });

  it('is lost when the epoch changed, the offset fell out of the ring or its age, or is ahead of the channel', () => {
    assert.equal(r({ epoch: 'other', offset: 4 }).lost, true);
    assert.equal(r({ epoch: 'E', offset: 1 }).lost, true);
    assert.equal(r({ epoch: 'E', offset: 3 }, 45).lost, true);
    assert.equal(r({ epoch: 'E', offset: 4 }, 45).lost, false);
    assert.equal(r({ epoch: 'E', offset: 6 }).lost, true);
    assert.deepEqual(r({ epoch: 'E', offset: 1 }).entries, []);
  });

  it('no position: the channel\'s place, to resume from later', () => {
    assert.deepEqual(r(null), { epoch: 'E', offset: 5, entries: [], lost: false });
  });
});

describe('MemoryHistory', () => {
  it('records only channels a subscription marked, and forgets them after the ttl (a new epoch then)', () => {
    let now = 1_000;
    let n = 0;
    const store = new MemoryHistory({ size: 10, ttl: 500 }, () => `e${++n}`, () => now);
    const got: Array<Position | null> = [];
    store.append('room', b('x'), false, null, (p) => got.push(p));
    assert.equal(got.length === 1 && got[0] === null, true);
    assert.equal(store.keeps('room'), false);
    store.recover('room', null, () => {});
    assert.equal(store.keeps('room'), true);
    store.append('room', b('y'), false, null, (p) => got.push(p));
    assert.deepEqual(got[1], { epoch: 'e1', offset: 1 });
    now += 501;
    assert.equal(store.keeps('room'), false);
    const recs: Recovery[] = [];
    store.recover('room', { epoch: 'e1', offset: 1 }, (r) => recs.push(r));
    assert.deepEqual(recs[0], { epoch: 'e2', offset: 0, entries: [], lost: true });
  });

  it('keeps at most `channels` channels: the least recently used goes, and resumes as lost', () => {
    let n = 0;
    const store = new MemoryHistory({ size: 10, ttl: 60_000, channels: 3 }, () => `e${++n}`, () => 1_000);
    for (const ch of ['a', 'b', 'c']) store.recover(ch, null, () => {});
    // 'a' is used again, so 'b' is now the least recently used.
    store.append('a', b('x'), false, null, () => {});
    store.recover('d', null, () => {});
    assert.equal(store.channels, 3);
    assert.equal(store.evicted, 1);
    assert.deepEqual(['a', 'b', 'c', 'd'].map((ch) => store.keeps(ch)), [true, false, true, true]);
    const recs: Recovery[] = [];
    store.recover('b', { epoch: 'e2', offset: 0 }, (r) => recs.push(r));
    assert.equal(recs[0]!.lost, true);
    assert.notEqual(recs[0]!.epoch, 'e2');
    assert.equal(store.channels, 3, 'still within the bound after b came back');
    const got: Array<Position | null> = [];
    store.append('a', b('y'), false, null, (p) => got.push(p));
    assert.deepEqual(got, [{ epoch: 'e1', offset: 2 }], 'a kept its history throughout');
  });

  it('a touch keeps a quiet channel with a subscriber alive', () => {
    let now = 0;
    const store = new MemoryHistory({ size: 10, ttl: 500 }, () => 'e', () => now);
    store.recover('room', null, () => {});
    for (let i = 0; i < 5; i++) {
      now += 400;
      store.touch('room');
    }
    assert.equal(store.keeps('room'), true);
    store.sweep();
    assert.equal(store.channels, 1);
    now += 501;
    store.sweep();
    assert.equal(store.channels, 0);
  });
});

describe('envelopes and the resume parameter', () => {
  it('wraps text as a string and binary as base64, with the position', () => {
    assert.equal(messageEnvelope('room', { epoch: 'ab', offset: 7 }, b('hi "you"'), false).toString(), '{"wsfpm":"message","channel":"room","epoch":"ab","offset":7,"data":"hi \\"you\\""}');
    assert.equal(messageEnvelope('room', null, Buffer.from([0, 255]), true).toString(), '{"wsfpm":"message","channel":"room","binary":true,"data":"AP8="}');
    assert.equal(noticeEnvelope('recovered', 'a:b', { epoch: 'ab', offset: 9 }, 2).toString(), '{"wsfpm":"recovered","channel":"a:b","epoch":"ab","offset":9,"missed":2}');
  });

  it('reads EPOCH.OFFSET.CHANNEL per channel (channels may hold dots), skipping malformed ones', () => {
    const url = '/chat.php?x=1&wsfpm_resume=ab12.7.room.1&wsfpm_resume=ab12.0.user%3A42&wsfpm_resume=AB.1.x&wsfpm_resume=ab.-1.x&wsfpm_resume=ab.1.bad%20name&wsfpm_resume=ab.99999999999999999.x&wsfpm_resume=';
    const { positions, rejected } = parseResume(url, 10);
    assert.deepEqual([...positions], [['room.1', { epoch: 'ab12', offset: 7 }], ['user:42', { epoch: 'ab12', offset: 0 }]]);
    assert.equal(rejected.length, 5);
    assert.equal(parseResume('/chat.php', 10).positions.size, 0);
    assert.equal(parseResume('/c.php?wsfpm_resume=a.1.x&wsfpm_resume=a.1.y&wsfpm_resume=a.2.x', 1).positions.get('x')!.offset, 2);
    assert.equal(parseResume('/c.php?wsfpm_resume=a.1.x&wsfpm_resume=a.1.y', 1).rejected.length, 1);
  });
});

/** A member that records what its client would see. */
function member(id: string, resume?: Map<string, Position>): Member & { seen: string[] } {
  const seen: string[] = [];
  return {
    id, path: '/', ip: '127.0.0.1', since: 0, resume, seen,
    deliverChannel: (_c, data) => (seen.push(`plain ${data.toString()}`), true),
    deliverDirect: (data) => (seen.push(data.toString()), true),
    close: () => {},
  };
}
const parsed = (m: { seen: string[] }): unknown[] => m.seen.map((s) => (s.startsWith('{') ? JSON.parse(s) : s));

describe('Hub with history', () => {
  it('a history subscription gets envelopes; a plain FORWARD subscription of the same channel the bare bytes', () => {
    const hub = new Hub(10);
    hub.history = new MemoryHistory({ size: 10, ttl: 60_000 }, () => 'e1');
    const h = member('h');
    const p = member('p');
    hub.add(h);
    hub.add(p);
    hub.subscribe('h', 'room', true, true);
    hub.subscribe('p', 'room', true);
    hub.publish('room', b('one'), false);
    assert.deepEqual(parsed(h), [{ wsfpm: 'subscribed', channel: 'room', epoch: 'e1', offset: 0 }, { wsfpm: 'message', channel: 'room', epoch: 'e1', offset: 1, data: 'one' }]);
    assert.deepEqual(p.seen, ['plain one']);
  });

  it('a reconnecting client gets what it missed, in order, then new messages; a stale epoch is lost', () => {
    const hub = new Hub(10);
    hub.history = new MemoryHistory({ size: 10, ttl: 60_000 }, () => 'e1');
    const first = member('a');
    hub.add(first);
    hub.subscribe('a', 'room', true, true);
    hub.publish('room', b('1'), false);
    hub.remove('a');
    hub.publish('room', b('2'), false);
    hub.publish('room', b('3'), false);
    const again = member('b', new Map([['room', { epoch: 'e1', offset: 1 }]]));
    hub.add(again);
    hub.subscribe('b', 'room', true, true);
    hub.publish('room', b('4'), false);
    assert.deepEqual(parsed(again).map((m) => { const e = m as Record<string, unknown>; return `${e.wsfpm} ${e.offset}`; }), ['message 2', 'message 3', 'recovered 3', 'message 4']);
    const stale = member('c', new Map([['room', { epoch: 'old', offset: 1 }]]));
    hub.add(stale);
    hub.subscribe('c', 'room', true, true);
    assert.deepEqual(parsed(stale), [{ wsfpm: 'lost', channel: 'room', epoch: 'e1', offset: 4 }]);
  });

  it('live messages that arrive during a slow recovery wait behind it, without duplicates', () => {
    // A store that answers recoveries later, as Redis does, and has already recorded offsets 1-3.
    const later: (() => void)[] = [];
    let top = 3;
    const store: HistoryStore = {
      keeps: () => true,
      touch: () => {},
      append: (_c, _d, _b, _x, done) => done({ epoch: 'E', offset: ++top }),
      recover: (_c, since, done) => {
        const upTo = top + 1; // the recovery also sees the first live message
        later.push(() => done({ epoch: 'E', offset: upTo, lost: false, entries: [2, 3, 4].slice(0, upTo - since!.offset).map((offset) => ({ offset, at: 0, data: b(`m${offset}`), binary: false })) }));
      },
    };
    const hub = new Hub(10);
    hub.history = store;
    const m = member('m', new Map([['room', { epoch: 'E', offset: 1 }]]));
    hub.add(m);
    hub.subscribe('m', 'room', true, true);
    hub.publish('room', b('m4'), false);
    hub.publish('room', b('m5'), false);
    assert.deepEqual(m.seen, []);
    later.shift()!();
    assert.deepEqual(parsed(m).map((x) => { const e = x as Record<string, unknown>; return `${e.wsfpm} ${e.offset}`; }), ['message 2', 'message 3', 'message 4', 'recovered 4', 'message 5']);
  });

  it('history off (no store): the HISTORY flag changes nothing', () => {
    const hub = new Hub(10);
    const m = member('m');
    hub.add(m);
    hub.subscribe('m', 'room', true, true);
    hub.publish('room', b('x'), false);
    assert.deepEqual(m.seen, ['plain x']);
  });
});

it('Hub: the history count follows subscriptions (resubscribe without history, unsubscribe, leave): a channel is touched only while one is left', () => {
  const touched: string[] = [];
  const store = new MemoryHistory({ size: 10, ttl: 60_000 }, () => 'e');
  const hub = new Hub(10);
  hub.history = {
    keeps: (c) => store.keeps(c),
    recover: (c, since, done) => store.recover(c, since, done),
    append: (c, d, bin, x, done) => store.append(c, d, bin, x, done),
    touch: (c) => void touched.push(c),
  };
  for (const id of ['a', 'b']) hub.add(member(id));
  hub.subscribe('a', 'x', true, true);
  hub.subscribe('b', 'x', true, true);
  hub.touchHistory();
  assert.deepEqual(touched.splice(0), ['x']);
  hub.subscribe('a', 'x', true);
  hub.unsubscribe('b', 'x');
  assert.deepEqual(touched.splice(0), ['x'], 'the last one leaving starts the ttl');
  hub.touchHistory();
  assert.deepEqual(touched, []);
  hub.subscribe('b', 'x', true, true);
  hub.remove('b');
  hub.touchHistory();
  assert.deepEqual(touched.splice(0), ['x']);
});
