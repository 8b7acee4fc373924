/**
 * The two systems every scenario measures side by side in the same run:
 * wsfpm (a daemon child process + a php-fpm master of the bench's own) and
 * the raw `ws` server (one child process).
 */
import path from 'node:path';
import type WebSocket from 'ws';
import { FpmPool } from '../../src/fpm/pool.ts';
import { BENCH_DIR, ServerChild } from './child.ts';
import { childPids, type ServerSide } from './proc.ts';
import { sleep } from './stats.ts';
import { closeWs, openWs, type EchoSocket } from './ws.ts';

export const WWW = path.join(BENCH_DIR, 'www');

/** Scripts or paths by role. */
export type Role = 'echo' | 'hold' | 'sub' | 'pub';

export interface System {
  name: 'wsfpm' | 'raw';
  child: ServerChild;
  url(role: Role): string;
  /** Daemon (or raw server) plus, for wsfpm, the php-fpm master and every worker. */
  side: ServerSide;
  /** Waits until the server holds no connections (previous scenario's closes done). */
  settle(timeoutMs?: number): Promise<void>;
}

const WSFPM_PATHS: Record<Role, string> = { echo: '/echo.php', hold: '/hold.php', sub: '/subscriber.php', pub: '/publisher.php' };
const RAW_PATHS: Record<Role, string> = { echo: '/echo', hold: '/hold', sub: '/sub', pub: '/pub' };

async function settle(child: ServerChild, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const s = await child.request('stats');
    if (s.connections === 0) return;
    await sleep(50);
  }
}

export interface PoolOptions {
  maxChildren: number;
}

/** Pools started and not yet stopped, so an interrupted run can stop them (and remove their temp dirs). */
const activePools = new Set<FpmPool>();

export async function startPool(maxChildren: number): Promise<FpmPool> {
  const pool = await FpmPool.start({ maxChildren, privateSessions: true });
  activePools.add(pool);
  const stop = pool.stop.bind(pool);
  pool.stop = async (graceMs?: number) => {
    activePools.delete(pool);
    await stop(graceMs);
  };
  return pool;
}

export async function stopAllPools(): Promise<void> {
  await Promise.all([...activePools].map((p) => p.stop()));
}

/** Waits until a pm-static master has forked all its workers (it forks them one by one after opening the socket). */
export async function waitWorkers(pool: FpmPool, count: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let n = 0;
  while (Date.now() < deadline) {
    n = pool.pid ? childPids(pool.pid).length : 0;
    if (n >= count) return n;
    await sleep(100);
  }
  return n;
}

export interface DaemonOptions {
  maxConnections: number;
  /** node flags for the daemon child, e.g. ['--cpu-prof', '--cpu-prof-dir', dir]. */
  nodeFlags?: string[];
  /** More config flags (e.g. upstream for front mode). */
  flags?: Record<string, string>;
}

/** With several pools the daemon spreads upgrades over them (`--fpm a,b,…`). */
export async function startWsfpm(pools: FpmPool | FpmPool[], options: DaemonOptions): Promise<System> {
  const all = Array.isArray(pools) ? pools : [pools];
  const fpmPids = (): number[] => all.flatMap((p) => (p.pid ? [p.pid, ...childPids(p.pid)] : []));
  const child = await ServerChild.start('wsfpm daemon', 'daemon.ts', {
    fpm: all.map((p) => `unix:${p.socket}`).join(','),
    root: WWW,
    maxConnections: String(options.maxConnections),
    // All the load comes from 127.0.0.1 and is meant to be fast: lift the per-address and per-client rate limits
    // (keys buildConfig does not know are ignored, so this is safe on daemons without them).
    maxPerIp: String(options.maxConnections),
    messageRate: '0',
    // The hold scenario opens thousands of connections while php-fpm forks; never let a slow handshake count as a refusal.
    handshakeTimeout: '30000',
    ...options.flags,
  }, ['--expose-gc', ...(options.nodeFlags ?? [])]);
  return {
    name: 'wsfpm',
    child,
    url: (role) => `ws://127.0.0.1:${child.port}${WSFPM_PATHS[role]}`,
    side: {
      label: 'wsfpm daemon + php-fpm master(s) + workers',
      pids: () => [child.pid, ...fpmPids()],
      parts: {
        daemon: () => [child.pid],
        'php-fpm': fpmPids,
      },
    },
    settle: (timeoutMs = 10_000) => settle(child, timeoutMs),
  };
}

export async function startRaw(nodeFlags: string[] = []): Promise<System> {
  const child = await ServerChild.start('raw ws server', 'raw-server.ts', {}, ['--expose-gc', ...nodeFlags]);
  return {
    name: 'raw',
    child,
    url: (role) => `ws://127.0.0.1:${child.port}${RAW_PATHS[role]}`,
    side: { label: 'raw ws server process', pids: () => [child.pid], parts: { server: () => [child.pid] } },
    settle: (timeoutMs = 10_000) => settle(child, timeoutMs),
  };
}

/** One side of an echo measurement (rtt, throughput): raw ws, wsfpm, or the floor (bench/lib/floor.ts). */
export interface EchoTarget {
  name: 'raw' | 'wsfpm' | 'floor';
  side: ServerSide;
  settle(): Promise<void>;
  /** A connection to the echo, open and ready for messages. */
  openEcho(): Promise<EchoSocket>;
  /** Closes one of this target's connections and waits for the close to complete. */
  closeEcho(socket: EchoSocket): Promise<void>;
}

/** A websocket system's echo, as an echo target. */
export function echoTarget(sys: System): EchoTarget {
  return {
    name: sys.name,
    side: sys.side,
    settle: () => sys.settle(),
    openEcho: () => openWs(sys.url('echo')),
    closeEcho: (socket) => closeWs(socket as WebSocket),
  };
}

/** ABBA… order for `rounds` rounds: each system goes first as often as second, which cancels drift in the machine's load. */
export function alternate<T>(a: T, b: T, rounds: number): T[] {
  const out: T[] = [];
  for (let i = 0; i < rounds; i++) out.push(...(i % 2 === 0 ? [a, b] : [b, a]));
  return out;
}

/** The same for more than two: each round runs them in turn, every other round in reverse. */
export function alternateAll<T>(items: readonly T[], rounds: number): T[] {
  const out: T[] = [];
  for (let i = 0; i < rounds; i++) out.push(...(i % 2 === 0 ? items : [...items].reverse()));
  return out;
}
