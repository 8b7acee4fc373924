/**
 * The request body of a page, made ready for PHP's STDIN.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { type IncomingMessage } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pageLimits } from './page-responder.ts';

type BodyPlan =
  | { kind: 'ready'; length: number; source(): Readable | null; cleanup(): void }
  | { kind: 'too-large' }
  | { kind: 'aborted' }
  | { kind: 'failed'; detail: string };

/**
 * With a Content-Length, the body streams straight from the client into
 * STDIN. A chunked body has no length up front, and PHP needs CONTENT_LENGTH
 * before it reads anything (nginx buffers such bodies too): it is collected
 * first, in memory up to pageLimits.chunkedInMemory, then in a temp file, up
 * to pageLimits.chunkedBodyLimit (413 beyond).
 */
export function planBody(raw: IncomingMessage): Promise<BodyPlan> {
  const cl = raw.headers['content-length'];
  if (cl !== undefined) {
    const length = Number(cl);
    return Promise.resolve({ kind: 'ready', length, source: () => (length > 0 ? raw : null), cleanup: () => {} });
  }
  if (raw.headers['transfer-encoding'] === undefined) return Promise.resolve({ kind: 'ready', length: 0, source: () => null, cleanup: () => {} });
  return spool(raw);
}

function spool(raw: IncomingMessage): Promise<BodyPlan> {
  return new Promise((resolve) => {
    const held: Buffer[] = [];
    let length = 0;
    let file: WriteStream | null = null;
    let filePath = '';
    let done = false;
    const removeFile = (): void => {
      if (filePath) unlink(filePath).catch(() => {});
    };
    const finish = (plan: BodyPlan): void => {
      if (done) return;
      done = true;
      raw.off('data', onData);
      raw.off('end', onEnd);
      raw.off('close', onClose);
      if (plan.kind !== 'ready') {
        file?.destroy();
        removeFile();
      }
      resolve(plan);
    };
    const onData = (chunk: Buffer): void => {
      length += chunk.length;
      if (length > pageLimits.chunkedBodyLimit) {
        raw.pause();
        finish({ kind: 'too-large' });
        return;
      }
      if (!file && length > pageLimits.chunkedInMemory) {
        filePath = path.join(os.tmpdir(), `wsfpm-body-${randomBytes(8).toString('hex')}`);
        file = createWriteStream(filePath, { flags: 'wx', mode: 0o600 });
        file.on('error', (err) => finish({ kind: 'failed', detail: `cannot spool the request body: ${err.message}` }));
        for (const b of held.splice(0)) file.write(b);
      }
      if (!file) {
        held.push(chunk);
      } else if (!file.write(chunk)) {
        raw.pause();
        file.once('drain', () => raw.resume());
      }
    };
    const onEnd = (): void => {
      if (!file) {
        finish({ kind: 'ready', length, source: () => (length > 0 ? Readable.from(held) : null), cleanup: () => {} });
        return;
      }
      file.end(() => finish({ kind: 'ready', length, source: () => createReadStream(filePath), cleanup: removeFile }));
    };
    const onClose = (): void => {
      if (!raw.complete) finish({ kind: 'aborted' });
    };
    raw.on('data', onData);
    raw.once('end', onEnd);
    raw.once('close', onClose);
  });
}
