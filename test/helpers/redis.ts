/**
 * A redis-server of the test's own: temp dir, loopback, a free port, no
 * persistence unless asked (`persist`: an append-only file fsynced on every
 * write, so a SIGKILL loses nothing, as a production Redis keeps its data).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startDaemon, startPool, type Harness } from './harness.ts';

export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

export class RedisServer {
  #child: ChildProcess | null = null;
  private constructor(readonly port: number, readonly dir: string, readonly persist: boolean) {}

  static async start(options: { persist?: boolean } = {}): Promise<RedisServer> {
    const r = new RedisServer(await freePort(), await mkdtemp(path.join(os.tmpdir(), 'wsfpm-redis-')), options.persist ?? false);
    await r.resume();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts (again) on the same port. */
  async resume(): Promise<void> {
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', this.persist ? 'yes' : 'no', '--appendfsync', 'always', '--dir', this.dir], { stdio: 'ignore' });
    this.#child = child;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`);
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect(this.port, '127.0.0.1', () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      });
      if (ok) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('redis-server did not start within 10 s');
  }

  /** SIGKILL: an outage, not a shutdown. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    await this.kill();
    await rm(this.dir, { recursive: true, force: true });
  }
}

type Node = Omit<Harness, 'pool'> & { pool: Harness['pool'] };

/** A redis-server, a php-fpm pool and two daemons sharing both: the suite's two nodes. `stop` ends them all. */
export async function startTwoNodes(workers: number, flags: Record<string, string> = {}): Promise<{ redis: RedisServer; one: Node; two: Node; stop(): Promise<void> }> {
  const redis = await RedisServer.start();
  const pool = await startPool(workers);
  const one = await startDaemon(pool, { redis: redis.url, ...flags });
  const two = await startDaemon(pool, { redis: redis.url, ...flags });
  return {
    redis, one, two,
    async stop() {
      await one.close();
      await two.close();
      await pool.stop();
      await redis.stop();
    },
  };
}
