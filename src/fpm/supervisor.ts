/**
 * `--fpm managed`: wsfpm runs a php-fpm master of its own for websocket
 * workers. A reload of the site's php-fpm kills live websockets and its
 * pool must not be starved by them, so they get a master wsfpm starts,
 * sizes (one static worker per allowed connection), watches and stops.
 *
 * When the master dies, its connections are lost: the daemon closes them
 * with 1012 (service restart, clients should reconnect) before the
 * leftover workers are killed, and the master is started again with
 * backoff (1 s doubling to 30 s; reset after a minute of health).
 */
import { type FpmAddress } from '../fastcgi/address.ts';
import { type Log } from '../log.ts';
import { FpmPool, inheritablePoolLines } from './pool.ts';

export interface ManagedOptions {
  maxChildren: number;
  /** Worker user when wsfpm runs as root; '' keeps wsfpm's own user. */
  user: string;
  /** The site's pool file to copy PHP settings from; '' for none. */
  inheritFrom: string;
  /** php-fpm binary; '' finds it. */
  binary: string;
  log: Log;
  /** Environment for the workers (the control API's address and token). */
  env: Record<string, string>;
  /** Called before a crashed master's workers are killed: close their connections with 1012. */
  onLost: () => void;
  /** Called once a crashed master runs again. */
  onBack?: () => void;
}

const MAX_BACKOFF = 30_000;
const HEALTHY_AFTER = 60_000;

export class ManagedFpm {
  readonly #pool: FpmPool;
  readonly #options: ManagedOptions;
  #backoff = 1000;
  #startedAt = Date.now();
  #stopped = false;
  #timer: NodeJS.Timeout | null = null;

  private constructor(pool: FpmPool, options: ManagedOptions) {
    this.#pool = pool;
    this.#options = options;
  }

  static async start(options: ManagedOptions): Promise<ManagedFpm> {
    const inherited = options.inheritFrom ? await inheritablePoolLines(options.inheritFrom) : [];
    // Values are quoted: php-fpm's ini parser would mangle ':' and '/' otherwise.
    for (const [k, v] of Object.entries(options.env)) inherited.push(`env[${k}] = "${v}"`);
    let self: ManagedFpm | null = null;
    const pool = await FpmPool.start({
      maxChildren: options.maxChildren,
      ...(options.user ? { user: options.user } : {}),
      ...(options.binary ? { binary: options.binary } : {}),
      inherited,
      onExit: (code, signal) => self?.crashed(code, signal),
    });
    self = new ManagedFpm(pool, options);
    options.log.info({ socket: pool.socket, workers: options.maxChildren, inherited: inherited.length }, 'managed php-fpm started');
    return self;
  }

  get address(): FpmAddress {
    return { kind: 'unix', path: this.#pool.socket };
  }

  get statusAddress(): FpmAddress {
    return { kind: 'unix', path: this.#pool.statusSocket };
  }

  get pool(): FpmPool {
    return this.#pool;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#pool.stop();
  }

  /** @internal the pool's exit hook. */
  crashed(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.#stopped) return;
    const log = this.#options.log;
    log.error({ code: 'WSFPM_ERR_FPM_CRASHED', exitCode: code, signal, log: this.#pool.logFile }, 'managed php-fpm master died; closing its connections with 1012 and restarting it');
    this.#options.onLost();
    this.#pool.killAll();
    if (Date.now() - this.#startedAt > HEALTHY_AFTER) this.#backoff = 1000;
    const delay = this.#backoff;
    this.#backoff = Math.min(MAX_BACKOFF, this.#backoff * 2);
    this.#timer = setTimeout(() => void this.#restart(), delay);
  }

  async #restart(): Promise<void> {
    if (this.#stopped) return;
    try {
      await this.#pool.restart();
      this.#startedAt = Date.now();
      this.#options.log.info({ socket: this.#pool.socket }, 'managed php-fpm restarted');
      this.#options.onBack?.();
    } catch (err) {
      this.#options.log.error({ detail: (err as Error).message }, 'managed php-fpm failed to restart');
      this.crashed(null, null);
    }
  }
}
