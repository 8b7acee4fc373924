/**
 * An HTTP answer written straight onto an upgrade's socket. Upgrades are
 * taken off the server's 'upgrade' event, before fastify (upgrade.ts), so a
 * refusal has no ServerResponse: this writes the status line, the headers
 * and the body in one write and closes the connection once it has left,
 * as Node's own response to an upgrade would.
 */
import { STATUS_CODES, validateHeaderName, validateHeaderValue } from 'node:http';
import type { Duplex } from 'node:stream';

/** A header PHP sent that Node would refuse (a bad name or a control character in the value): left out, not a crash. */
function valid(name: string, value: string): boolean {
  try {
    validateHeaderName(name);
    validateHeaderValue(name, value);
    return true;
  } catch {
    return false;
  }
}

/**
 * Writes the response and ends the socket. `headers` are written as given,
 * after dropping invalid ones and PHP's own date, content-length and
 * connection; date, content-length (not on 204/304) and `connection: close`
 * are added. Returns the names of the headers it dropped.
 */
export function writeRawReply(socket: Duplex, status: number, headers: ReadonlyArray<readonly [string, string]>, body: Buffer | string): string[] {
  const payload = typeof body === 'string' ? Buffer.from(body) : body;
  const dropped: string[] = [];
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`;
  for (const [name, value] of headers) {
    const lower = name.toLowerCase();
    // Written below, once: a second copy from PHP would contradict them.
    if (lower === 'date' || lower === 'content-length' || lower === 'connection') continue;
    if (valid(name, value)) head += `${name}: ${value}\r\n`;
    else dropped.push(name);
  }
  // RFC 9110 §8.6: no Content-Length on a 204, and none that would not describe the body on a 304.
  const bodiless = status === 204 || status === 304;
  head += `date: ${new Date().toUTCString()}\r\n${bodiless ? '' : `content-length: ${payload.length}\r\n`}connection: close\r\n\r\n`;
  if (socket.destroyed) return dropped;
  // Once it has left, the socket goes: the client may not close its end.
  socket.end(bodiless ? Buffer.from(head, 'latin1') : Buffer.concat([Buffer.from(head, 'latin1'), payload]), () => socket.destroy());
  return dropped;
}
