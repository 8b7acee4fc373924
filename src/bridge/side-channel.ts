/**
 * The side channel: a private unix socket per bound connection, so PHP
 * reads and writes its websocket's frames on a real stream instead of
 * through php://input (which copies every byte into a temp stream) and
 * php-fpm's output buffer (docs/protocol.md, "Side channel").
 *
 * One listener per daemon, in a directory only the daemon and the pool's
 * group can enter (0750). Each upgrade is offered a one-time 128-bit token
 * in its CGI params; the first thing a connection to the listener sends is
 * those 16 bytes. A token that is unknown, already used, or not presented
 * within `claimTimeoutMs` gets the socket closed and one log line: nothing
 * else on the machine can read or inject a connection's frames. The ack
 * byte tells PHP the channel is its own, so it can fall back to
 * STDIN/STDOUT whenever it does not come.
 */
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ERRORS } from '../errors.ts';
import { type Log } from '../log.ts';

export const TOKEN_BYTES = 16;
/** How long a new connection has to present its token, ms: PHP sends it at once. */
const CLAIM_TIMEOUT_MS = 2_000;
/** What the daemon answers a valid token with; anything else (or EOF) means "use STDIN/STDOUT". */
export const CHANNEL_ACK = 0x01;

/** The CGI parameters that offer the channel. */
export const CHANNEL_PARAM = 'WSFPM_CHANNEL';
export const CHANNEL_TOKEN_PARAM = 'WSFPM_CHANNEL_TOKEN';

export interface SideChannelOptions {
  /** Parent directory of the listener's own directory. */
  parent: string;
  /** Group that may enter the directory (the pool's workers); null keeps the daemon's own. */
  gid: number | null;
  claimTimeoutMs: number;
}

/** One upgrade's offer: its params, and the socket once PHP has claimed it. */
export interface ChannelOffer {
  readonly params: ReadonlyArray<readonly [string, string]>;
  /** Called at most once, with the claimed socket (already acked). */
  onClaim(cb: (socket: net.Socket) => void): void;
  /** The offer can no longer be claimed (PHP answered without it, or the upgrade ended). */
  withdraw(): void;
}

interface Pending {
  socket: net.Socket | null;
  claim: ((socket: net.Socket) => void) | null;
}

export class SideChannelListener {
  readonly #server: net.Server;
  readonly #pending = new Map<string, Pending>();
  readonly #log: Log;
  readonly #claimTimeoutMs: number;
  readonly dir: string;
  readonly address: string;

  private constructor(server: net.Server, dir: string, log: Log, claimTimeoutMs: number) {
    this.#server = server;
    this.#log = log;
    this.#claimTimeoutMs = claimTimeoutMs;
    this.dir = dir;
    this.address = path.join(dir, 'ch.sock');
  }

  static async start(options: SideChannelOptions, log: Log): Promise<SideChannelListener> {
    await mkdir(options.parent, { recursive: true });
    const dir = await mkdtemp(path.join(options.parent, 'wsfpm-ch-'));
    // The directory is the access check everywhere (some systems ignore a socket file's own mode).
    if (options.gid !== null) await chown(dir, process.getuid?.() ?? -1, options.gid);
    await chmod(dir, 0o750);
    const server = net.createServer();
    const listener = new SideChannelListener(server, dir, log, options.claimTimeoutMs);
    server.on('connection', (socket) => listener.#onConnection(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listener.address, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // Linux checks write permission on the socket file too: it needs the group as well.
    if (options.gid !== null) await chown(listener.address, process.getuid?.() ?? -1, options.gid);
    await chmod(listener.address, 0o660);
    return listener;
  }

  /** A new one-time token for one upgrade. */
  offer(): ChannelOffer {
    const token = randomBytes(TOKEN_BYTES).toString('hex');
    const pending: Pending = { socket: null, claim: null };
    this.#pending.set(token, pending);
    const pendingMap = this.#pending;
    return {
      params: [[CHANNEL_PARAM, `unix:${this.address}`], [CHANNEL_TOKEN_PARAM, token]],
      onClaim(cb) {
        if (pending.socket) return cb(pending.socket);
        pending.claim = cb;
      },
      withdraw() {
        pendingMap.delete(token);
        pending.claim = null;
      },
    };
  }

  /** Offers not yet claimed or withdrawn: a leak shows here. */
  get pending(): number {
    return this.#pending.size;
  }

  async close(): Promise<void> {
    this.#pending.clear();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    await rm(this.dir, { recursive: true, force: true });
  }

  #onConnection(socket: net.Socket): void {
    let got: Buffer = Buffer.alloc(0);
    const refuse = (why: string): void => {
      this.#log.warn({ code: 'WSFPM_ERR_CHANNEL_TOKEN', detail: why }, ERRORS.WSFPM_ERR_CHANNEL_TOKEN.message);
      socket.destroy();
    };
    const timer = setTimeout(() => refuse(`no token within ${this.#claimTimeoutMs} ms`), this.#claimTimeoutMs);
    timer.unref();
    const onData = (chunk: Buffer): void => {
      got = got.length ? Buffer.concat([got, chunk]) : chunk;
      if (got.length < TOKEN_BYTES) return;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.pause();
      if (got.length > TOKEN_BYTES) return refuse('bytes after the token before the ack');
      const token = got.toString('hex');
      const pending = this.#pending.get(token);
      // One-time: a second connection with the same token, or one after the offer ended, finds nothing.
      if (!pending) return refuse('unknown, used or withdrawn token');
      this.#pending.delete(token);
      socket.write(Buffer.of(CHANNEL_ACK));
      if (pending.claim) pending.claim(socket);
      else pending.socket = socket;
    };
    socket.on('data', onData);
    socket.on('error', () => socket.destroy());
    socket.once('close', () => clearTimeout(timer));
  }
}

export interface ChannelSetting {
  /** --side-channel-dir; empty: systemd's RuntimeDirectory, else the temp dir. */
  dir: string;
  /** --side-channel-group, a name or gid; empty: `fallbackGroup`, then the FastCGI socket's group. */
  group: string;
  fallbackGroup: string;
  /** The FastCGI unix socket, when php-fpm is reached through one. */
  fpmSocket: string | null;
  /** Default CLAIM_TIMEOUT_MS; tests shorten it. */
  claimTimeoutMs?: number;
}

/**
 * The daemon's listener, or null (one log line) when it cannot be made: the
 * scripts then use STDIN/STDOUT, as they do wherever they cannot reach it.
 */
export async function openSideChannel(setting: ChannelSetting, log: Log): Promise<SideChannelListener | null> {
  const parent = setting.dir || process.env.RUNTIME_DIRECTORY?.split(':')[0] || os.tmpdir();
  try {
    const gid = await channelGroup(setting);
    return await SideChannelListener.start({ parent, gid, claimTimeoutMs: setting.claimTimeoutMs ?? CLAIM_TIMEOUT_MS }, log);
  } catch (err) {
    log.warn({ dir: parent, detail: (err as Error).message }, 'side channel unavailable; bound scripts use STDIN/STDOUT');
    return null;
  }
}

async function channelGroup(setting: ChannelSetting): Promise<number | null> {
  const name = setting.group || setting.fallbackGroup;
  if (name) return /^\d+$/.test(name) ? Number(name) : groupId(name);
  if (!setting.fpmSocket) return null;
  const st = await stat(setting.fpmSocket).catch(() => null);
  // Our own group needs no chown, and a foreign one we are not in would fail it.
  return st && st.gid !== process.getgid?.() ? st.gid : null;
}

async function groupId(name: string): Promise<number> {
  const text = await readFile('/etc/group', 'utf8');
  for (const line of text.split('\n')) {
    const [group, , gid] = line.split(':');
    if (group === name && gid) return Number(gid);
  }
  throw new Error(`no group named ${name} in /etc/group`);
}
