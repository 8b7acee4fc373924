/**
 * Real peers for the tests: a php-fpm master of the suite's own (temp dir,
 * unix socket, pm static) and a wsfpm daemon on an ephemeral loopback port,
 * plus a websocket client that records what happened.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { buildConfig, type Config } from '../../src/config.ts';
import { FpmPool } from '../../src/fpm/pool.ts';
import { createDaemon, type Daemon } from '../../src/server/app.ts';

export const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'www');

export interface Harness {
  pool: FpmPool;
  daemon: Daemon;
  config: Config;
  port: number;
  url(pathAndQuery: string): string;
  logs: Array<Record<string, unknown>>;
  close(): Promise<void>;
}

export async function startPool(maxChildren = 8, ini: Record<string, string> = {}): Promise<FpmPool> {
  return FpmPool.start({ maxChildren, ini, privateSessions: true });
}

/** A pino stream that parses each line into `logs` (and echoes it with WSFPM_TEST_DEBUG). */
export function logSink(logs: Array<Record<string, unknown>>): { write(line: string): void } {
  return {
    write(line: string) {
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        logs.push({ raw: line });
      }
      if (process.env.WSFPM_TEST_DEBUG) process.stderr.write(line);
    },
  };
}

/** WSFPM_TEST_SIDE_CHANNEL=off runs a suite's bound scripts on STDIN/STDOUT (npm test runs the PHP suites both ways). */
function sideChannelMode(): Record<string, string> {
  const mode = process.env.WSFPM_TEST_SIDE_CHANNEL;
  return mode ? { sideChannel: mode } : {};
}

/** A daemon on port 0 whose pino lines are captured in `logs`. */
export async function startDaemon(pool: FpmPool, flags: Record<string, string> = {}): Promise<Omit<Harness, 'pool'> & { pool: FpmPool }> {
  const config = buildConfig({ root: FIXTURES, port: '0', fpm: `unix:${pool.socket}`, control: 'tcp:127.0.0.1:0', logLevel: 'debug', ...sideChannelMode(), ...flags }, {});
  const logs: Array<Record<string, unknown>> = [];
  const daemon = await createDaemon(config, logSink(logs));
  await daemon.app.listen({ host: '127.0.0.1', port: 0 });
  const addr = daemon.app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    pool,
    daemon,
    config,
    port,
    logs,
    url: (p) => `ws://127.0.0.1:${port}${p}`,
    close: async () => {
      await daemon.app.close();
    },
  };
}

export async function startHarness(flags: Record<string, string> = {}, maxChildren = 8): Promise<Harness> {
  const pool = await startPool(maxChildren);
  const h = await startDaemon(pool, flags);
  return {
    ...h,
    close: async () => {
      await h.daemon.app.close();
      await pool.stop();
    },
  };
}

export interface Received {
  data: Buffer;
  binary: boolean;
}

/** A websocket client that queues messages and remembers how it ended. */
export class Client {
  readonly ws: WebSocket;
  readonly messages: Received[] = [];
  #waiters: Array<() => void> = [];
  closed: Promise<{ code: number; reason: string }>;
  opened: Promise<void>;

  constructor(url: string, options: WebSocket.ClientOptions & { protocols?: string | string[] } = {}) {
    const { protocols, ...rest } = options;
    this.ws = new WebSocket(url, protocols, rest);
    this.ws.on('message', (data, binary) => {
      this.messages.push({ data: data as Buffer, binary });
      this.#wake();
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', (_req, res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() })));
      });
      this.ws.once('error', reject);
    });
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => {
      this.ws.once('close', (code, reason) => {
        this.#wake();
        resolve({ code, reason: reason.toString() });
      });
    });
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  /** The next message, in order; rejects if the connection closes first or after `ms`. */
  async next(ms = 10_000): Promise<Received> {
    const deadline = Date.now() + ms;
    while (this.messages.length === 0) {
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error('connection closed while waiting for a message');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no message within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.messages.shift()!;
  }

  async text(ms?: number): Promise<string> {
    return (await this.next(ms)).data.toString('utf8');
  }
}

export async function open(url: string, options?: ConstructorParameters<typeof Client>[1]): Promise<Client> {
  const c = new Client(url, options);
  await c.opened;
  return c;
}

/** The HTTP refusal of an upgrade: status, headers and body. */
/** A bound connection (hub-raw.php) holding a FORWARD subscription to `channel`, and its connection id. */
export async function forwardSubscriber(h: Pick<Harness, 'url'>, channel: string): Promise<{ c: Client; id: string }> {
  const c = await open(h.url('/hub-raw.php'));
  c.ws.send('id');
  const id = await c.text();
  assert.equal(await c.text(), 'ok id');
  c.ws.send(`fsub|${channel}`);
  assert.equal(await c.text(), 'ok fsub');
  return { c, id };
}

export async function refusal(url: string, options?: ConstructorParameters<typeof Client>[1]): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  const c = new Client(url, options);
  try {
    await c.opened;
  } catch (err) {
    const e = err as { status?: number; headers?: Record<string, string>; body?: string };
    if (e.status) return { status: e.status, headers: e.headers ?? {}, body: e.body ?? '' };
    throw err;
  }
  c.ws.close();
  throw new Error('the upgrade was accepted');
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
