/** Options of a bench run and what a scenario gets to work with. */
import type { FpmPool } from '../../src/fpm/pool.ts';
import type { ServerChild } from './child.ts';
import type { EchoTarget, System } from './systems.ts';

export interface Options {
  scenarios: string[];
  /** Seconds of measurement per system and per message size (throughput) or in all (fanout). */
  duration: number;
  /** Alternating rounds per paired measurement (2 = ABBA). */
  rounds: number;
  rttCount: number;
  connectCount: number;
  connectConcurrency: number;
  throughputConnections: number;
  inFlight: number;
  /** Throughput message sizes, bytes. */
  sizes: number[];
  subscribers: number;
  hold: number[];
  /** hold: most workers per php-fpm master (the bound connections are spread over ⌈N / this⌉ masters). */
  holdMasterWorkers: number;
  profile: boolean;
  profileDir: string;
  json: string;
  /** The daemons' --side-channel (auto: frames on the side channel; off: on STDIN/STDOUT). */
  sideChannel: 'auto' | 'off';
}

export interface Context {
  opts: Options;
  /** The shared systems (rtt, throughput, connect, fanout); hold starts its own. */
  wsfpm: System;
  raw: System;
  /** The floor beside them in rtt and throughput (php-fpm with no daemon, bench/lib/floor.ts); null without the shared pool. */
  floor: EchoTarget | null;
  /** Null when no shared scenario runs (proxy then starts a small pool of its own). */
  pool: FpmPool | null;
  log(line: string): void;
  /** node flags that put a child under --cpu-prof when the run profiles (`who`: wsfpm or raw). */
  profileFlags(who: 'wsfpm' | 'raw'): string[];
  /** Tells the run a profiled child started (its start-up is cut from the profile). */
  profiled(child: ServerChild): void;
}
