/**
 * A php-fpm master of wsfpm's own, with a pool tuned for bound websockets
 * (see ../shared facts in docs/operations.md): pm static, because queued
 * connections never make ondemand spawn; no execution time limit, because a
 * busy connection burns CPU time forever; no output buffering or zlib, which
 * would hold or corrupt frames; display_errors off, which would put HTML in
 * the frame stream; a spool dir of its own for php://input.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, writeFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface PoolOptions {
  /** Runtime directory (config, sockets, logs, spool, sessions). Default: a new temp dir, removed on stop. */
  dir?: string;
  /** Workers, i.e. concurrent websocket connections the pool can hold. */
  maxChildren: number;
  /** php-fpm binary; default: found on PATH or in /usr/sbin. */
  binary?: string;
  /** Extra php_admin_value lines. */
  ini?: Record<string, string>;
  /** Unix user for the workers when running as root; default root (with -R). */
  user?: string;
  /** Keep sessions in the pool's own dir (tests, demo) instead of php.ini's session.save_path, which a site shares. */
  privateSessions?: boolean;
  /** Called when the master exits without stop() having been asked (a crash, a kill). */
  onExit?: (code: number | null, signal: NodeJS.Signals | null) => void;
  /** Lines copied from the site's own pool file (php_value, php_admin_value, env …), before wsfpm's overrides. */
  inherited?: string[];
}

/** Directives of a site's pool file that shape what PHP code sees; the process-management ones are wsfpm's own. */
const INHERITABLE = /^\s*(php_value|php_flag|php_admin_value|php_admin_flag|env)\[[^\]]+\]\s*=/;

/** The PHP settings of an existing pool file (e.g. /etc/php/8.2/fpm/pool.d/www.conf), for a pool that must behave like the site's. */
export async function inheritablePoolLines(file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8');
  return text.split('\n').filter((line) => INHERITABLE.test(line)).map((line) => line.trim());
}

/** The newest php-fpm on this machine, or null. */
export async function findPhpFpm(): Promise<string | null> {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/local/sbin'])) {
    if (dir && existsSync(path.join(dir, 'php-fpm'))) return path.join(dir, 'php-fpm');
  }
  for (const dir of ['/usr/sbin', '/usr/local/sbin']) {
    const names = await readdir(dir).catch(() => [] as string[]);
    const found = names.filter((n) => /^php-fpm\d+(\.\d+)?$/.test(n)).sort((a, b) => b.localeCompare(a, 'en', { numeric: true }));
    if (found[0]) return path.join(dir, found[0]);
  }
  return null;
}

export class FpmPool {
  readonly dir: string;
  readonly socket: string;
  readonly statusSocket: string;
  readonly spoolDir: string;
  readonly sessionDir: string;
  /** The master's log (start-up errors, worker crashes, workers' stray output). */
  readonly logFile: string;
  #child: ChildProcess | null = null;
  #watchdog: ChildProcess | null = null;
  #ownDir: boolean;
  #exited: Promise<void> = Promise.resolve();
  #stopping = false;
  #ready = false;

  private constructor(dir: string, ownDir: boolean, private readonly options: PoolOptions) {
    this.dir = dir;
    this.#ownDir = ownDir;
    this.socket = path.join(dir, 'fpm.sock');
    this.statusSocket = path.join(dir, 'status.sock');
    this.spoolDir = path.join(dir, 'spool');
    this.sessionDir = path.join(dir, 'sessions');
    this.logFile = path.join(dir, 'php-fpm.log');
  }

  static async start(options: PoolOptions): Promise<FpmPool> {
    const own = !options.dir;
    const dir = options.dir ?? (await mkdtemp(path.join(os.tmpdir(), 'wsfpm-fpm-')));
    const pool = new FpmPool(dir, own, options);
    await pool.#start();
    return pool;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** The master process, for tests that stop or kill it. */
  get child(): ChildProcess | null {
    return this.#child;
  }

  async #start(): Promise<void> {
    const binary = this.options.binary ?? (await findPhpFpm());
    if (!binary) throw new Error('php-fpm not found: install it (Debian: apt-get install php-fpm) or pass its path');
    await mkdir(this.spoolDir, { recursive: true });
    await mkdir(this.sessionDir, { recursive: true });
    const conf = path.join(this.dir, 'php-fpm.conf');
    await writeFile(conf, this.#config());
    const args = ['-y', conf, '-F'];
    if (process.getuid?.() === 0) args.push('-R');
    // Its own process group, so that stopping it can reach workers a dying master leaves behind.
    const child = spawn(binary, args, { stdio: 'ignore', detached: true });
    this.#child = child;
    // If wsfpm dies without stopping the pool, neither the master nor its workers may outlive it:
    // on exit() here, on any death (SIGKILL, OOM) through the watchdog.
    const orphanGuard = (): void => killGroup(child, 'SIGKILL');
    process.once('exit', orphanGuard);
    this.#endWatchdog();
    if (child.pid !== undefined) this.#watchdog = watchGroup(child.pid);
    this.#exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        process.removeListener('exit', orphanGuard);
        resolve();
        if (!this.#stopping && this.#ready) this.options.onExit?.(code, signal);
      }),
    );
    this.#stopping = false;
    this.#ready = false;
    try {
      await this.#waitReady(child);
    } catch (err) {
      this.#endWatchdog();
      throw err;
    }
    this.#ready = true;
  }

  #config(): string {
    const root = process.getuid?.() === 0;
    const user = this.options.user ?? 'root';
    const ini = {
      max_execution_time: '0',
      output_buffering: '0',
      'zlib.output_compression': '0',
      display_errors: 'off',
      log_errors: 'on',
      upload_tmp_dir: this.spoolDir,
      ...(this.options.privateSessions ? { 'session.save_path': this.sessionDir } : {}),
      ...this.options.ini,
    };
    return [
      '[global]',
      `pid = ${path.join(this.dir, 'php-fpm.pid')}`,
      `error_log = ${this.logFile}`,
      'daemonize = no',
      '[wsfpm]',
      ...(root ? [`user = ${user}`, `group = ${user}`] : []),
      `listen = ${this.socket}`,
      // php-fpm's own default: bursts of handshakes must queue, not fail with EAGAIN.
      'listen.backlog = 511',
      'pm = static',
      `pm.max_children = ${this.options.maxChildren}`,
      `pm.status_path = /status`,
      `pm.status_listen = ${this.statusSocket}`,
      'request_terminate_timeout = 0',
      'catch_workers_output = yes',
      'decorate_workers_output = no',
      'clear_env = no',
      // php-fpm keeps the first value of a setting, so inherited lines must not repeat one of ours.
      ...(this.options.inherited ?? []).filter((line) => !(settingName(line) in ini)),
      ...Object.entries(ini).map(([k, v]) => `php_admin_value[${k}] = ${v}`),
      '',
    ].join('\n');
  }

  async #waitReady(child: ChildProcess): Promise<void> {
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`php-fpm exited with code ${child.exitCode} during start-up:\n${await this.recentLog()}`);
      if (existsSync(this.socket) && (await canConnect(this.socket))) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGKILL');
    throw new Error('php-fpm did not open its socket within 15 s');
  }

  /** Kills the master and every worker at once (workers of a dead master still serve its socket). */
  killAll(): void {
    if (this.#child) killGroup(this.#child, 'SIGKILL');
    this.#endWatchdog();
  }

  /** Once the group is dead: a watchdog left running could one day kill a new group of the same number. */
  #endWatchdog(): void {
    const dog = this.#watchdog;
    this.#watchdog = null;
    if (!dog) return;
    // SIGKILL first: it never runs again, so closing its pipe cannot set it off.
    dog.kill('SIGKILL');
    dog.stdin?.destroy();
  }

  /** The last lines of the master's log. */
  async recentLog(lines = 20): Promise<string> {
    const text = await readFile(this.logFile, 'utf8').catch(() => '');
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  }

  /**
   * Stops the pool: SIGTERM (the master terminates its workers, and with them
   * every bound connection), then SIGKILL to the whole group after `graceMs`.
   */
  async stop(graceMs = 3000): Promise<void> {
    const child = this.#child;
    this.#stopping = true;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs);
      await this.#exited;
      clearTimeout(timer);
    }
    // Workers a killed master left behind still hold connections.
    if (child) killGroup(child, 'SIGKILL');
    this.#endWatchdog();
    if (this.#ownDir) await rm(this.dir, { recursive: true, force: true });
  }

  /** Starts it again after a crash or a stop (same sockets). */
  async restart(): Promise<void> {
    const own = this.#ownDir;
    this.#ownDir = false;
    await this.stop();
    this.#ownDir = own;
    await this.#start();
  }
}

/** `php_admin_value[output_buffering] = 4096` → `output_buffering`. */
function settingName(line: string): string {
  return /\[([^\]]+)\]/.exec(line)?.[1] ?? '';
}

/**
 * Kills process group `pgid` when this process dies, however it dies: a
 * shell in a session of its own waits for end-of-file on a pipe that only
 * this process holds, which the kernel closes when this process ends,
 * SIGKILL included (where no 'exit' handler runs). PR_SET_PDEATHSIG
 * (`setpriv --pdeathsig`) on the master would not do: it is not inherited
 * across fork, so the workers would not get it, and workers whose master
 * died keep serving its socket; and a signal that kills wsfpm and the
 * master together (the group of a test run, the OOM killer's choice) leaves
 * no master to stop them.
 */
function watchGroup(pgid: number): ChildProcess {
  const dog = spawn('/bin/sh', ['-c', 'read _; kill -s KILL -- "-$1"', 'wsfpm-fpm-watchdog', String(pgid)], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
  // Without /bin/sh the pool still runs, guarded only by the 'exit' handler.
  dog.once('error', () => {});
  dog.stdin!.on('error', () => {});
  // Neither the watchdog nor its pipe keeps this process alive.
  dog.unref();
  (dog.stdin as unknown as net.Socket).unref();
  return dog;
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // The group is already gone.
  }
}

function canConnect(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ path: socketPath });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
