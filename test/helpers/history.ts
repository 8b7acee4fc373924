/** What the history tests share: a publish through a daemon's control API and the envelopes a history subscription's client reads. */
import assert from 'node:assert/strict';
import type { Daemon } from '../../src/server/app.ts';
import type { Client } from './harness.ts';

export type Envelope = { wsfpm: string; channel: string; epoch: string; offset: number; data?: string; missed?: number };

export async function publishVia(daemon: Daemon, channel: string, data: string): Promise<void> {
  const c = daemon.control!;
  const res = await fetch(`http://${c.address.replace(/^tcp:/, '')}/publish`, {
    method: 'POST',
    headers: { authorization: `Bearer ${c.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ channel, data }),
  });
  assert.equal(res.status, 200);
}

export async function envelope(c: Client): Promise<Envelope> {
  const text = await c.text();
  assert.ok(text.startsWith('{"wsfpm":'), `an envelope, not ${text}`);
  return JSON.parse(text) as Envelope;
}
