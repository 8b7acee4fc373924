/**
 * The servers under test run in child processes of their own, so their CPU
 * time and memory can be read from /proc apart from the load generator's:
 * bench/daemon.ts (wsfpm: createDaemon + buildConfig) and bench/raw-server.ts
 * (the bare `ws` ceiling). Both talk to the bench over an IPC channel:
 * `{ type: 'ready', port }` once listening, answers to `{ id, cmd }`, and
 * they exit when asked to stop or when the bench goes away.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_DIR = path.resolve(BENCH_DIR, '..');

/** Every child still running, so an aborted bench can stop them all. */
const running = new Set<ServerChild>();

export interface ChildMessage {
  type?: string;
  id?: number;
  port?: number;
  [key: string]: unknown;
}

export class ServerChild {
  readonly proc: ChildProcess;
  readonly label: string;
  port = 0;
  /** The daemon's control API address (`tcp:HOST:PORT`), '' for the raw server. */
  control = '';
  /** ms from spawn to listening (module loading, start-up): what a CPU profile of it should skip. */
  startupMs = 0;
  #nextId = 1;
  #waiting = new Map<number, (msg: ChildMessage) => void>();
  #exited: Promise<void>;

  private constructor(label: string, proc: ChildProcess) {
    this.label = label;
    this.proc = proc;
    this.#exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    proc.on('message', (raw) => {
      const msg = raw as ChildMessage;
      if (msg.id !== undefined) {
        const w = this.#waiting.get(msg.id);
        this.#waiting.delete(msg.id);
        w?.(msg);
      }
    });
    running.add(this);
    void this.#exited.then(() => running.delete(this));
  }

  get pid(): number {
    return this.proc.pid ?? 0;
  }

  /**
   * Starts `script` (relative to bench/) with `args` as one JSON argument and
   * waits for it to listen. `nodeFlags` go before the script (e.g. --cpu-prof).
   */
  static async start(label: string, script: string, args: object, nodeFlags: string[] = []): Promise<ServerChild> {
    const proc = spawn(process.execPath, [...nodeFlags, '--import', 'tsx', path.join(BENCH_DIR, script), JSON.stringify(args)], {
      cwd: REPO_DIR,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const child = new ServerChild(label, proc);
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${label} did not start within 30 s`)), 30_000);
      const onMessage = (raw: unknown): void => {
        const msg = raw as ChildMessage;
        if (msg.type === 'ready') {
          clearTimeout(timer);
          proc.off('message', onMessage);
          child.port = Number(msg.port);
          child.control = typeof msg.control === 'string' ? msg.control : '';
          child.startupMs = performance.now() - t0;
          resolve();
        }
      };
      proc.on('message', onMessage);
      proc.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${label} exited during start-up (code ${code}, signal ${signal})`));
      });
    }).catch(async (err: unknown) => {
      await child.stop();
      throw err;
    });
    return child;
  }

  /** One request over IPC; the child answers with the same id. */
  request(cmd: string, extra: object = {}, timeoutMs = 30_000): Promise<ChildMessage> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        reject(new Error(`${this.label}: no answer to ${cmd} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiting.set(id, (msg) => {
        clearTimeout(timer);
        resolve(msg);
      });
      this.proc.send({ id, cmd, ...extra });
    });
  }

  /** Asks it to stop (it closes its server and exits, writing a CPU profile if asked for); SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    try {
      if (this.proc.connected) this.proc.send({ id: 0, cmd: 'stop' });
      else this.proc.kill('SIGTERM');
    } catch {
      this.proc.kill('SIGTERM');
    }
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    await this.#exited;
    clearTimeout(timer);
  }
}

/** Stops every child this process started and has not stopped yet. */
export async function stopAllChildren(): Promise<void> {
  await Promise.all([...running].map((c) => c.stop(3000)));
}

/** Last resort on process exit: no child may outlive the bench. */
export function killAllChildrenNow(): void {
  for (const c of running) {
    try {
      c.proc.kill('SIGKILL');
    } catch {
      // Already gone.
    }
  }
}
