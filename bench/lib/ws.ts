/** The load generator's websocket helpers (the `ws` client, as a Node backend would use it). */
import WebSocket from 'ws';

/** A new client websocket (still connecting). */
export function connectWs(url: string): WebSocket {
  return new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 << 20 });
}

/** Waits for a connecting websocket to open; rejects on an HTTP refusal, an error, or after `timeoutMs`. */
export function waitOpen(ws: WebSocket, timeoutMs = 15_000): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const url = ws.url;
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`open ${url}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    ws.once('open', () => {
      clearTimeout(timer);
      ws.off('error', onError);
      // Later errors (a reset) end up as 'close'; the scenarios count those.
      ws.on('error', () => {});
      resolve(ws);
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      reject(err);
    };
    ws.once('error', onError);
    ws.once('unexpected-response', (_req, res) => {
      clearTimeout(timer);
      ws.terminate();
      const code = res.headers['x-wsfpm-error'];
      reject(new Error(`open ${url}: HTTP ${res.statusCode}${code ? ` ${code}` : ''}`));
    });
  });
}

/** Opens a websocket that expects nothing from the server before it sends (a message arriving first would be lost). */
export function openWs(url: string, timeoutMs = 15_000): Promise<WebSocket> {
  return waitOpen(connectWs(url), timeoutMs);
}

/** What the echo scenarios need of a connection: a `ws` client, or the floor's FastCGI one (bench/lib/floor.ts). */
export interface EchoSocket {
  send(data: Buffer, options: { binary: boolean }): void;
  on(event: 'message', listener: (data: Buffer, isBinary: boolean) => void): unknown;
  once(event: 'close', listener: (code: number) => void): unknown;
}

/**
 * A websocket (or another echo socket) whose messages are awaited one at a
 * time, in order (`next()`), for request/response scenarios.
 */
export class Conversation<S extends EchoSocket = WebSocket> {
  readonly ws: S;
  readonly #end: () => Promise<void>;
  #queue: Buffer[] = [];
  #waiter: { resolve: (b: Buffer) => void; reject: (e: Error) => void; timer: NodeJS.Timeout } | null = null;
  closed = false;
  closeCode = 0;

  /** `end` closes the socket and waits for the close to complete. */
  constructor(ws: S, end: () => Promise<void>) {
    this.ws = ws;
    this.#end = end;
    ws.on('message', (data) => {
      const b = data as Buffer;
      const w = this.#waiter;
      if (w) {
        this.#waiter = null;
        clearTimeout(w.timer);
        w.resolve(b);
      } else this.#queue.push(b);
    });
    ws.once('close', (code) => {
      this.closed = true;
      this.closeCode = code;
      const w = this.#waiter;
      this.#waiter = null;
      if (w) {
        clearTimeout(w.timer);
        w.reject(new Error(`closed with ${code} while waiting for a message`));
      }
    });
  }

  /** Listens from the start, so a message the server sends right after the 101 is kept. */
  static async open(url: string, timeoutMs?: number): Promise<Conversation> {
    const ws = connectWs(url);
    const conv = new Conversation(ws, () => closeWs(ws));
    await waitOpen(conv.ws, timeoutMs);
    return conv;
  }

  next(timeoutMs = 15_000): Promise<Buffer> {
    const queued = this.#queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.closed) return Promise.reject(new Error(`closed with ${this.closeCode}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = null;
        reject(new Error(`no message within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiter = { resolve, reject, timer };
    });
  }

  close(): Promise<void> {
    return this.#end();
  }
}

/** Closes and waits for the close to complete (terminates after `timeoutMs`). */
export function closeWs(ws: WebSocket, timeoutMs = 5000): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      ws.terminate();
      resolve();
    }, timeoutMs);
    ws.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(1000);
  });
}

/** Runs `task(i)` for i in [0, total) with at most `concurrency` at once. */
export async function pooled(total: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(concurrency, total) }, async () => {
    while (next < total) await task(next++);
  });
  await Promise.all(lanes);
}

/** A text payload of `size` ASCII bytes. */
export function textPayload(size: number, fill = 'x'): Buffer {
  return Buffer.alloc(size, fill);
}
