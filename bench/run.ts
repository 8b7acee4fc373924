/**
 * wsfpm's benchmark (issue 6): `npm run bench [-- SCENARIO… FLAGS]`.
 *
 * Starts everything it needs on loopback — a php-fpm master of its own
 * (FpmPool, pm static), the wsfpm daemon in a child process (createDaemon +
 * buildConfig, bench/daemon.ts), and a raw `ws` server in another child
 * process as the ceiling (bench/raw-server.ts) — runs bounded scenarios
 * against both side by side, prints a table of each wsfpm figure with its
 * ratio to the raw server's in the same run — and, in rtt and throughput,
 * beside the floor: the bench's own FastCGI client straight to php-fpm
 * running the same echo, no daemon (bench/lib/floor.ts) — and writes the lot to
 * bench/results/latest.json. Every process it starts is stopped at the end,
 * also when a scenario fails or the run is interrupted.
 *
 * Scenarios: rtt, throughput, connect, fanout, proxy, hold (default: all);
 * `events` alone runs bench/events.ts (events mode at scale), `pusher` bench/pusher.ts.
 * See docs/performance.md for what each figure means.
 */
import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import type { FpmPool } from '../src/fpm/pool.ts';
import { findPhpFpm } from '../src/fpm/pool.ts';
import { BENCH_DIR, killAllChildrenNow, stopAllChildren, type ServerChild } from './lib/child.ts';
import type { Context, Options } from './lib/context.ts';
import { loadAverage, openFileLimit } from './lib/proc.ts';
import { floorTarget } from './lib/floor.ts';
import { formatProfile, summarizeProfile } from './lib/profile.ts';
import { fmt, now, type Row, type ScenarioResult } from './lib/stats.ts';
import { startPool, startRaw, startWsfpm, stopAllPools, waitWorkers, type System } from './lib/systems.ts';
import { connect } from './scenarios/connect.ts';
import { fanout } from './scenarios/fanout.ts';
import { hold } from './scenarios/hold.ts';
import { proxy } from './scenarios/proxy.ts';
import { rtt } from './scenarios/rtt.ts';
import { throughput } from './scenarios/throughput.ts';

const ORDER = ['rtt', 'connect', 'throughput', 'fanout', 'proxy', 'hold'] as const;
type Scenario = (typeof ORDER)[number];
const SHARED = new Set<Scenario>(['rtt', 'connect', 'throughput', 'fanout']);
/** Scenarios that use the shared pool when it runs (and start their own otherwise). */
const USES_SHARED_POOL = new Set<Scenario>([...SHARED, 'proxy']);

const USAGE = `usage: npm run bench -- [SCENARIO…] [FLAGS]

scenarios: ${ORDER.join(', ')} (default: all, in that order); or events / pusher alone (bench/events.ts, bench/pusher.ts)
rtt and throughput also measure the floor: php-fpm and the PHP library with no daemon (bench/lib/floor.ts)

  --duration S        seconds measured per system for throughput (per message size) and fanout (default 10)
  --rounds N          alternating rounds per paired measurement, raw/wsfpm/wsfpm/raw… (default 2)
  --rtt-count N       sequential echoes per system in rtt (default 2000)
  --connect-count N   connections per connect run (default 500)
  --concurrency N     connections opened at once in connect (default 50)
  --connections N     throughput connections (default 50)
  --in-flight N       messages in flight per throughput connection (default 10)
  --sizes N,N         throughput message sizes in bytes (default 32,16384)
  --subscribers N     fanout subscribers (default 100)
  --hold N,N          idle bound connections to hold (default 1000,5000)
  --hold-master-workers N  hold: most workers per php-fpm master (default 1000; 100000 for one master)
  --profile           run the wsfpm daemon and the raw ws server under node --cpu-prof and print summaries
                      (figures are then slowed by profiling: written to latest-profiled.json)
  --profile-dir DIR   where the .cpuprofile files go, in wsfpm/ and raw/ (default: a temp dir)
  --json PATH         result file (default bench/results/latest.json)
  --side-channel M    the daemons' --side-channel: auto (default) or off (frames on STDIN/STDOUT)
`;

function parseArgs(argv: string[]): Options {
  const opts: Options = {
    scenarios: [],
    duration: 10,
    rounds: 2,
    rttCount: 2000,
    connectCount: 500,
    connectConcurrency: 50,
    throughputConnections: 50,
    inFlight: 10,
    sizes: [32, 16 * 1024],
    subscribers: 100,
    hold: [1000, 5000],
    holdMasterWorkers: 1000,
    profile: false,
    profileDir: '',
    json: '',
    sideChannel: 'auto',
  };
  const int = (flag: string, v: string | undefined, min = 1): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`${flag} needs an integer ≥ ${min}, got ${JSON.stringify(v)}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (flag) {
      case '--help':
      case '-h':
        process.stdout.write(USAGE);
        process.exit(0);
        break;
      case '--duration': {
        const v = Number(value());
        if (!(v > 0 && v <= 600)) throw new Error('--duration takes seconds, > 0 and ≤ 600');
        opts.duration = v;
        break;
      }
      case '--rounds': opts.rounds = int(flag, value()); break;
      case '--rtt-count': opts.rttCount = int(flag, value()); break;
      case '--connect-count': opts.connectCount = int(flag, value()); break;
      case '--concurrency': opts.connectConcurrency = int(flag, value()); break;
      case '--connections': opts.throughputConnections = int(flag, value()); break;
      case '--in-flight': opts.inFlight = int(flag, value()); break;
      case '--sizes': opts.sizes = (value() ?? '').split(',').map((s) => int('--sizes', s.trim())); break;
      case '--subscribers': opts.subscribers = int(flag, value()); break;
      case '--hold-master-workers': opts.holdMasterWorkers = int(flag, value()); break;
      case '--hold': opts.hold = (value() ?? '').split(',').map((s) => int('--hold', s.trim())); break;
      case '--profile': opts.profile = true; break;
      case '--profile-dir': opts.profileDir = path.resolve(value() ?? ''); break;
      case '--json': opts.json = path.resolve(value() ?? ''); break;
      case '--side-channel': {
        const v = value();
        if (v !== 'auto' && v !== 'off') throw new Error('--side-channel takes auto or off');
        opts.sideChannel = v;
        break;
      }
      default:
        if (a.startsWith('-')) throw new Error(`unknown flag ${a}\n\n${USAGE}`);
        if (a === 'all') opts.scenarios.push(...ORDER);
        else if ((ORDER as readonly string[]).includes(a)) opts.scenarios.push(a);
        else throw new Error(`unknown scenario ${a}; one of ${ORDER.join(', ')}`);
    }
  }
  if (opts.scenarios.length === 0) opts.scenarios = [...ORDER];
  opts.scenarios = ORDER.filter((s) => opts.scenarios.includes(s));
  if (!opts.json) opts.json = path.join(BENCH_DIR, 'results', opts.profile ? 'latest-profiled.json' : 'latest.json');
  if (opts.profile && !opts.profileDir) opts.profileDir = path.join(os.tmpdir(), `wsfpm-bench-profile-${process.pid}`);
  return opts;
}

const log = (line: string): void => {
  process.stderr.write(`[bench ${(process.uptime()).toFixed(0).padStart(3)} s] ${line}\n`);
};

function table(rows: Row[]): string {
  const head = ['scenario', 'metric', 'wsfpm', 'raw ws', 'wsfpm/raw', 'floor', 'wsfpm/floor', 'target', 'result', 'notes'];
  const times = (x: number | null): string => (x === null ? '–' : `${x.toFixed(2)}×`);
  const lines = rows.map((r) => [
    r.scenario,
    `${r.metric} (${r.unit})`,
    fmt(r.wsfpm),
    fmt(r.raw),
    times(r.ratio),
    fmt(r.floor),
    times(r.floorRatio),
    r.target || '',
    r.met === null ? '' : r.met ? 'met' : '**NOT MET**',
    r.note ?? '',
  ]);
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...lines.map((l) => `| ${l.map(esc).join(' | ')} |`)].join('\n');
}

function phpFpmVersion(binary: string | null): string {
  if (!binary) return 'not found';
  try {
    return execFileSync(binary, ['-v'], { encoding: 'utf8' }).split('\n')[0] ?? '';
  } catch {
    return binary;
  }
}

/**
 * The main-thread .cpuprofile files written into `dir` since `since` (ms epoch).
 * Names are CPU.DATE.TIME.PID.THREAD.SEQ.cpuprofile; thread 0 is the main
 * thread, others are tsx's module-loader worker (idle after start-up).
 */
function newProfiles(dir: string, since: number): string[] {
  try {
    return readdirSync(dir).filter((f) => /\.\d+\.0\.\d+\.cpuprofile$/.test(f)).map((f) => path.join(dir, f)).filter((f) => statSync(f).mtimeMs >= since);
  } catch {
    return [];
  }
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  const wall0 = now();
  const startedAt = Date.now();
  const phpFpm = await findPhpFpm();
  const machine = {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? '',
    memTotalMiB: Math.round(os.totalmem() / 2 ** 20),
    node: process.version,
    phpFpm: phpFpmVersion(phpFpm),
    openFiles: openFileLimit(),
    loadAverageStart: loadAverage(),
    loadAverageEnd: 0,
  };
  log(`${command}: ${opts.scenarios.join(', ')}; ${machine.cpus} cores, load average ${machine.loadAverageStart}, ${machine.phpFpm}`);

  const scenarios = opts.scenarios as Scenario[];
  const results: Partial<Record<Scenario, ScenarioResult>> = {};
  const profiles: string[] = [];
  /** Start-up time of each profiled child by pid, cut from its profile. */
  const startup = new Map<number, number>();
  let pool: FpmPool | null = null;
  let wsfpm: System | null = null;
  let raw: System | null = null;
  let floor: Awaited<ReturnType<typeof floorTarget>> | null = null;

  const stopShared = async (): Promise<void> => {
    const d = wsfpm;
    const p = pool;
    const f = floor;
    wsfpm = null;
    pool = null;
    floor = null;
    await f?.close();
    await d?.child.stop();
    await p?.stop();
  };
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = true;
    log(`${signal}: stopping everything`);
    void (async () => {
      await stopShared().catch(() => {});
      await stopAllChildren().catch(() => {});
      await stopAllPools().catch(() => {});
      process.exit(130);
    })();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', killAllChildrenNow);

  const profileFlags = (who: string): string[] => (opts.profile ? ['--cpu-prof', '--cpu-prof-dir', path.join(opts.profileDir, who)] : []);
  const profiled = (child: ServerChild): void => void startup.set(child.pid, child.startupMs);
  try {
    raw = await startRaw(profileFlags('raw'));
    profiled(raw.child);
    if (scenarios.some((s) => SHARED.has(s))) {
      const size = Math.max(opts.throughputConnections, opts.subscribers + 1, 2 * opts.connectConcurrency) + 28;
      pool = await startPool(size);
      await waitWorkers(pool, size, 60_000);
      wsfpm = await startWsfpm(pool, { maxConnections: size, flags: { sideChannel: opts.sideChannel }, nodeFlags: profileFlags('wsfpm') });
      profiled(wsfpm.child);
      log(`php-fpm pool of ${size} workers (pm static), wsfpm daemon pid ${wsfpm.child.pid} on port ${wsfpm.child.port}, raw ws pid ${raw.child.pid} on port ${raw.child.port}`);
    }
    const runners: Record<Scenario, (ctx: Context) => Promise<ScenarioResult>> = { rtt, connect, throughput, fanout, proxy, hold };
    for (const name of scenarios) {
      if (!USES_SHARED_POOL.has(name) && wsfpm) {
        // hold brings its own pool and daemon; the shared ones would only take memory and file descriptors.
        await stopShared();
      }
      const t = now();
      log(`${name}: start`);
      try {
        floor ??= pool ? await floorTarget(pool, opts.sideChannel) : null;
        const ctx: Context = { opts, wsfpm: wsfpm!, raw, floor: pool ? floor : null, log, pool, profileFlags, profiled };
        results[name] = await runners[name](ctx);
      } catch (err) {
        log(`${name}: FAILED: ${(err as Error).stack ?? err}`);
        results[name] = { rows: [], details: { error: String((err as Error).stack ?? err) }, skipped: `failed: ${(err as Error).message}` };
      }
      log(`${name}: done in ${((now() - t) / 1000).toFixed(1)} s${results[name]?.skipped ? ` (${results[name]?.skipped})` : ''}`);
    }
  } finally {
    await stopShared().catch((err) => log(`stopping wsfpm: ${err}`));
    await raw?.child.stop().catch((err) => log(`stopping raw ws: ${err}`));
    await stopAllChildren();
    await stopAllPools();
  }
  if (opts.profile) profiles.push(...newProfiles(path.join(opts.profileDir, 'wsfpm'), startedAt), ...newProfiles(path.join(opts.profileDir, 'raw'), startedAt));

  machine.loadAverageEnd = loadAverage();
  const elapsed = (now() - wall0) / 1000;
  const rows = scenarios.flatMap((s) => results[s]?.rows ?? []);
  const skipped = Object.fromEntries(scenarios.filter((s) => results[s]?.skipped).map((s) => [s, results[s]!.skipped!]));

  const out: string[] = [];
  out.push(`wsfpm bench — ${new Date(startedAt).toISOString()} — ${command}`);
  out.push(`${machine.cpus} × ${machine.cpuModel}, ${machine.memTotalMiB} MiB, node ${machine.node}, ${machine.phpFpm}; load average ${machine.loadAverageStart} → ${machine.loadAverageEnd}; ${elapsed.toFixed(0)} s${opts.profile ? '; PROFILED (daemon under --cpu-prof: figures are slowed)' : ''}`);
  out.push('');
  out.push(table(rows));
  for (const [s, why] of Object.entries(skipped)) out.push(`\n${s}: ${why}`);
  process.stdout.write(out.join('\n') + '\n');

  const pidOf = (f: string): number => Number(/\.(\d+)\.0\.\d+\.cpuprofile$/.exec(f)?.[1] ?? 0);
  const profileSummaries = profiles.map((f) => summarizeProfile(f, 30, (startup.get(pidOf(f)) ?? 0) + 500));
  if (profileSummaries.length) {
    const text = profileSummaries.map(formatProfile).join('\n\n');
    process.stdout.write(`\n${text}\n`);
    const sizes = opts.scenarios.includes('throughput') && opts.sizes.join() !== '32,16384' ? `-${opts.sizes.join('-')}` : '';
    const txt = path.join(BENCH_DIR, 'results', `profile-${opts.scenarios.join('-')}${sizes}.txt`);
    mkdirSync(path.dirname(txt), { recursive: true });
    writeFileSync(txt, `${command}\n\n${text}\n`);
    log(`profile summary written to ${path.relative(process.cwd(), txt)}; raw profiles in ${opts.profileDir}`);
  }

  mkdirSync(path.dirname(opts.json), { recursive: true });
  writeFileSync(opts.json, JSON.stringify({
    version: 1,
    date: new Date(startedAt).toISOString(),
    command,
    elapsedSeconds: elapsed,
    profiled: opts.profile,
    machine,
    options: opts,
    rows,
    skipped,
    details: Object.fromEntries(scenarios.map((s) => [s, results[s]?.details ?? null])),
    profiles: profileSummaries,
  }, null, 2) + '\n');
  log(`results written to ${path.relative(process.cwd(), opts.json)}`);
  const failed = Object.values(skipped).some((s) => s.startsWith('failed'));
  process.exitCode = failed ? 1 : 0;
}

// `events` (bench/events.ts) and `pusher` (bench/pusher.ts) are runs of their own: events needs the
// open-files budget of this whole process, and neither shares the scenarios' table.
const own: Record<string, () => Promise<unknown>> = { events: () => import('./events.ts'), pusher: () => import('./pusher.ts') };
const run = own[process.argv[2] ?? ''] ? own[process.argv[2]!]!().then(() => {}) : main();
run.catch(async (err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? err}\n`);
  await stopAllChildren().catch(() => {});
  await stopAllPools().catch(() => {});
  process.exit(1);
});
