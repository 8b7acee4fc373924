/**
 * Chaos under load (issue 13, part 2), shared by test/chaos.test.ts (one
 * round of every fault, ~1–2 min) and `npm run chaos -- --minutes N` (rounds
 * in random order until the time is up).
 *
 * Two daemons in processes of their own (test/helpers/chaos-daemon.ts) on one
 * redis-server: node A with `--fpm managed`, node B on a php-fpm pool of the
 * suite's own. Each connection ("slot") is bound (chaos-bound.php) or events
 * mode (chaos-events.php), subscribed with FORWARD to one channel on which
 * the suite publishes sequence numbers through A's control API, and sends
 * sequence-numbered messages whose echoes it checks. Between them the faults
 * run in turn: SIGKILL of workers (the suite knows which worker holds which
 * bound connection), SIGHUP, a Redis outage, SIGKILL of A's managed master,
 * and a crowd of abusive clients.
 *
 * What counts as a violation, each one line in the report:
 * - an echo or a channel delivery out of sequence (gap, duplicate, reorder);
 *   on B a gap is allowed only for what was published during a Redis outage
 *   (cross-node delivery is at-most-once, documented), on A never (local
 *   delivery continues while Redis is down);
 * - a close code the fault in progress does not explain (a bound connection
 *   whose worker was killed must close 1011; A's bound ones must close 1012
 *   when the master dies; nothing else may close during SIGHUP, the Redis
 *   outage or the abusers);
 * - an abuser whose outcome is not the documented one;
 * - a daemon that exits, or logs an error without a code;
 * - after the storm: echoes or deliveries not caught up, the hub not matching
 *   the open connections; once everything is closed, file descriptors or
 *   heap (after GC) above the baseline taken before the load.
 */
import { readdir, readFile } from 'node:fs/promises';
import net from 'node:net';
import WebSocket from 'ws';
import { ServerChild } from '../../bench/lib/child.ts';
import { FpmPool } from '../../src/fpm/pool.ts';
import { FIXTURES, sleep } from './harness.ts';
import { RedisServer } from './redis.ts';

export interface ChaosOptions {
  /** Connections per node and mode. */
  slots: { a: { bound: number; events: number }; b: { bound: number; events: number } };
  /** Abusive clients started at once in the abuse phase. */
  abusers: number;
  /** 0: one round of each fault; else rounds in random order until this many minutes passed. */
  minutes: number;
  /** Progress lines. */
  say?: (line: string) => void;
}

export const DEFAULT_CHAOS: ChaosOptions = {
  slots: { a: { bound: 110, events: 110 }, b: { bound: 40, events: 40 } },
  abusers: 200,
  minutes: 0,
};

export interface DaemonStats {
  fds: number;
  members: number;
  channels: number;
  connections: number;
  heapUsed: number;
  rss: number;
  gc: boolean;
  managedPid: number;
  broker: boolean | null;
  reloads: number;
  codes: Record<string, number>;
  errors: string[];
}

export interface ChaosReport {
  seconds: number;
  slots: number;
  lives: number;
  /** Slots still on their first connection at the end: not hit by any fault. */
  untouched: number;
  echoes: number;
  deliveries: number;
  published: number;
  faults: Record<string, number>;
  closes: Record<string, number>;
  refusals: Record<string, number>;
  abusers: Record<string, number>;
  baseline: { a: DaemonStats; b: DaemonStats };
  loaded: { a: DaemonStats; b: DaemonStats };
  settled: { a: DaemonStats; b: DaemonStats };
  final: { a: DaemonStats; b: DaemonStats };
  violations: string[];
}

/** While the suite stops its daemons, their exits are expected. */
let stopping = false;
const CHANNEL = 'chaos';
const TOKEN = 'c'.repeat(48);
/** Fixed file descriptors a daemon may hold above its baseline once idle (a Redis reconnect, a respawned status probe). */
const FD_SLACK = 4;
/** Heap after GC may exceed its baseline by this much once idle (a run grows it by ~2 MiB once, however long it is). */
const HEAP_SLACK = 5 * 1024 * 1024;
/** How long after a fault a close it explains may still arrive. */
const FAULT_WINDOW_MS = 15_000;

type NodeName = 'a' | 'b';
type Mode = 'bound' | 'events';

interface Window {
  node: NodeName;
  modes: Mode[];
  codes: number[];
  until: number;
  why: string;
}

/** A cross-node outage: B may miss channel sequence numbers from `from` up to (not including) `to`. */
interface Outage {
  from: number;
  to: number;
}

class Run {
  readonly violations: string[] = [];
  readonly faults: Record<string, number> = {};
  readonly closes: Record<string, number> = {};
  readonly refusals: Record<string, number> = {};
  readonly abusers: Record<string, number> = {};
  readonly windows: Window[] = [];
  readonly outages: Outage[] = [];
  /** The next sequence number the publisher will publish. */
  seq = 0;
  echoes = 0;
  deliveries = 0;
  lives = 0;
  /** The fault in progress (or the one whose reconnects are settling), for the report's counts. */
  phase = 'load';
  /** While false, closed slots are not reopened (the end of the run). */
  reopen = true;

  violation(line: string): void {
    if (this.violations.length < 200) this.violations.push(line);
  }

  count(bag: Record<string, number>, key: string | number): void {
    bag[key] = (bag[key] ?? 0) + 1;
  }

  /** Whether a close with `code` of a slot is explained by a fault in progress. */
  explained(slot: Slot, code: number): boolean {
    if (slot.mustClose && slot.mustClose.code === code) return true;
    const now = Date.now();
    return this.windows.some((w) => w.node === slot.node && w.modes.includes(slot.mode) && w.codes.includes(code) && now <= w.until);
  }

  window(node: NodeName, modes: Mode[], codes: number[], why: string): Window {
    const w = { node, modes, codes, why, until: Date.now() + FAULT_WINDOW_MS };
    this.windows.push(w);
    return w;
  }

  /** Whether B missing channel sequence numbers `from`..`to-1` is explained by Redis outages. */
  lossExplained(from: number, to: number): boolean {
    for (let s = from; s < to; s++) if (!this.outages.some((o) => s >= o.from && s < o.to)) return false;
    return true;
  }
}

/** One logical client: reconnects after each documented close, each connection a new "life" with its own sequence. */
class Slot {
  ws: WebSocket | null = null;
  life = 0;
  /** The worker pid that holds a bound connection ("ready PID"), 0 until known. */
  pid = 0;
  ready = false;
  /** The life the storm began with: a slot still on it at the end was not hit. */
  firstLife = 0;
  sent = 0;
  echoed = 0;
  /** Last channel sequence number seen in this life, -1 for none yet. */
  lastSeq = -1;
  mustClose: { code: number; by: number; why: string } | null = null;
  #run: Run;
  #url: string;

  constructor(run: Run, readonly node: NodeName, readonly mode: Mode, readonly index: number, port: number) {
    this.#run = run;
    this.#url = `ws://127.0.0.1:${port}/chaos-${mode}.php?ch=${CHANNEL}`;
  }

  get name(): string {
    return `${this.node}/${this.mode}/${this.index}#${this.life}`;
  }

  get open(): boolean {
    return this.ws?.readyState === WebSocket.OPEN && this.ready;
  }

  /** Opens a new life; resolves once it is ready or was refused (then retried while the run reopens). */
  connect(): Promise<void> {
    const run = this.#run;
    this.life++;
    run.lives++;
    this.ready = false;
    this.pid = 0;
    this.sent = 0;
    this.echoed = 0;
    this.lastSeq = -1;
    this.mustClose = null;
    const ws = new WebSocket(this.#url);
    this.ws = ws;
    return new Promise<void>((resolve) => {
      let settled = false;
      const settle = (): void => {
        if (!settled) (settled = true), resolve();
      };
      ws.on('unexpected-response', (_req, res) => {
        run.count(run.refusals, `${run.phase}: ${this.node}:${res.statusCode}`);
        // Documented refusals while the pool is full, restarting or flooded; anything else is a bug.
        if (![502, 503].includes(res.statusCode ?? 0)) run.violation(`${this.name}: upgrade refused with ${res.statusCode}`);
        res.resume();
        ws.terminate();
      });
      ws.on('error', (err) => {
        // A refusal, counted above, ends in terminate(): "closed before the connection was established".
        if (!/Unexpected server response|closed before the connection was established/.test(err.message)) run.violation(`${this.name}: ${err.message}`);
      });
      ws.on('message', (data: Buffer) => {
        this.#message(data.toString());
        if (this.ready) settle();
      });
      ws.on('close', (code) => {
        const wasOpen = this.ready;
        this.ready = false;
        // The suite's own close: at the end, or a bounce.
        if (!run.reopen) return settle();
        if (this.#bouncing) {
          this.#bouncing = false;
          settle();
          return void this.connect();
        }
        if (wasOpen || code !== 1006) {
          run.count(run.closes, `${run.phase}: ${this.node}/${this.mode}:${code}`);
          if (!run.explained(this, code)) run.violation(`${this.name}: closed with ${code}, which no fault in progress explains`);
        }
        settle();
        // Reconnect as a page would, a moment later.
        setTimeout(() => void this.connect(), (wasOpen ? 100 : 500) + Math.random() * 400);
      });
    });
  }

  #message(text: string): void {
    const run = this.#run;
    if (text.startsWith('ready ')) {
      this.pid = Number(text.slice(6));
      this.ready = true;
      return;
    }
    if (text.startsWith('c:')) {
      const s = Number(text.slice(2));
      run.deliveries++;
      if (this.lastSeq >= 0 && s !== this.lastSeq + 1) {
        const gapOnB = this.node === 'b' && s > this.lastSeq + 1 && run.lossExplained(this.lastSeq + 1, s);
        if (!gapOnB) run.violation(`${this.name}: channel delivery ${s} after ${this.lastSeq}`);
      }
      this.lastSeq = s;
      return;
    }
    const want = `e:${this.life}:${this.echoed}`;
    if (text !== want) run.violation(`${this.name}: echo ${JSON.stringify(text.slice(0, 40))}, expected ${want}`);
    else {
      this.echoed++;
      run.echoes++;
    }
  }

  send(): void {
    if (!this.open || this.sent - this.echoed > 50) return;
    this.ws!.send(`e:${this.life}:${this.sent++}`);
  }

  #bouncing = false;

  /** Leaves as a page would on reload (1000) and connects again at once. */
  bounce(): void {
    if (!this.open) return;
    this.#bouncing = true;
    this.ws!.close(1000, 'reload');
  }

  close(): Promise<void> {
    const ws = this.ws;
    if (!ws || ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => {
      ws.once('close', () => resolve());
      ws.close(1000, 'chaos over');
    });
  }
}

async function until(what: string, ok: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
  return true;
}

/** Children of `pid` (php-fpm workers of a master). */
async function childrenOf(pid: number): Promise<number[]> {
  const found: number[] = [];
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const st = await readFile(`/proc/${p}/stat`, 'utf8').catch(() => '');
    if (Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]) === pid) found.push(Number(p));
  }
  return found;
}

function kill(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

const pick = <T>(items: T[]): T | undefined => items[Math.floor(Math.random() * items.length)];

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const say = options.say ?? (() => {});
  const run = new Run();
  const started = Date.now();
  // With its data kept across the kill, as a production Redis would: what the nodes wrote before the outage is still there.
  const redis = await RedisServer.start({ persist: true });
  const totalB = options.slots.b.bound + options.slots.b.events;
  const poolB = await FpmPool.start({ maxChildren: options.slots.b.bound + 40, privateSessions: true });
  const common = {
    root: FIXTURES, redis: redis.url, controlToken: TOKEN, maxPerIp: '100000', requestTimeout: '2000', messageRate: '100', maxMessage: '65536',
    eventConcurrency: '4', handshakeTimeout: '5000',
  };
  const children: ServerChild[] = [];
  const nodes = {} as Record<NodeName, ServerChild>;
  try {
    nodes.a = await ServerChild.start('chaos-a', '../test/helpers/chaos-daemon.ts', { ...common, fpm: 'managed', maxConnections: String(options.slots.a.bound + 30) }, ['--expose-gc']);
    children.push(nodes.a);
    nodes.b = await ServerChild.start('chaos-b', '../test/helpers/chaos-daemon.ts', { ...common, fpm: `unix:${poolB.socket}`, maxConnections: String(options.slots.b.bound + 30) }, ['--expose-gc']);
    children.push(nodes.b);
    for (const [name, child] of Object.entries(nodes)) {
      child.proc.once('exit', (code, signal) => {
        if (!stopping) run.violation(`daemon ${name} exited (code ${code}, signal ${signal})`);
      });
    }
    const stats = async (n: NodeName): Promise<DaemonStats> => (await nodes[n].request('stats')) as unknown as DaemonStats;
    const both = async (): Promise<{ a: DaemonStats; b: DaemonStats }> => ({ a: await stats('a'), b: await stats('b') });

    const slots: Slot[] = [];
    for (const node of ['a', 'b'] as const) {
      for (const mode of ['bound', 'events'] as const) {
        for (let i = 0; i < options.slots[node][mode]; i++) slots.push(new Slot(run, node, mode, i, nodes[node].port));
      }
    }
    const openAll = async (): Promise<void> => {
      run.reopen = true;
      for (let i = 0; i < slots.length; i += 25) await Promise.all(slots.slice(i, i + 25).map((s) => s.connect()));
      if (!(await until('every slot ready', () => slots.every((s) => s.open), 30_000))) run.violation(`${slots.filter((s) => !s.open).length} slots not open after 30 s`);
    };
    const closeAll = async (): Promise<void> => {
      run.reopen = false;
      await Promise.all(slots.map((s) => s.close()));
      for (const n of ['a', 'b'] as const) {
        if (!(await until(`node ${n} empty`, async () => (await stats(n)).members === 0 && (await stats(n)).connections === 0, 20_000))) {
          run.violation(`node ${n} still holds ${(await stats(n)).members} members after every client left`);
        }
      }
    };

    // Warm-up: one open/close of everything, so lazy start-up costs are not counted as growth.
    say(`warm-up: ${slots.length} connections`);
    await openAll();
    await closeAll();
    const baseline = await both();
    say(`baseline: ${JSON.stringify(brief(baseline))}`);

    await openAll();
    // The publisher: sequence numbers on the channel through A's control API, one at a time.
    let publishing = true;
    const control = `http://${nodes.a.control.replace(/^tcp:/, '')}/publish`;
    const publisher = (async () => {
      while (publishing) {
        try {
          const res = await fetch(control, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ channel: CHANNEL, data: `c:${run.seq}` }) });
          if (res.status !== 200) run.violation(`publish ${run.seq}: control API answered ${res.status}`);
          await res.arrayBuffer();
          run.seq++;
        } catch (err) {
          run.violation(`publish ${run.seq}: ${(err as Error).message}`);
          await sleep(500);
        }
        await sleep(100);
      }
    })();
    // Senders: bound slots twice a second, events slots once (each message is a php-fpm request there).
    let tick = 0;
    const ticker = setInterval(() => {
      tick++;
      for (const s of slots) if ((tick + s.index) % (s.mode === 'bound' ? 5 : 10) === 0) s.send();
    }, 100);
    for (const s of slots) s.firstLife = s.life;
    await sleep(3000);
    const loaded = await both();
    say(`loaded: ${JSON.stringify(brief(loaded))}`);

    const phases: Record<string, () => Promise<void>> = {
      workers: () => killWorkers(run, slots, stats, say),
      sighup: () => sighup(run, nodes, stats, say),
      redis: () => redisOutage(run, redis, slots, stats, say),
      master: () => killMaster(run, slots, stats, say),
      abusers: () => abuse(run, options.abusers, nodes, say),
    };
    const names = Object.keys(phases);
    let round = 0;
    do {
      const order = round === 0 ? names : [...names].sort(() => Math.random() - 0.5);
      for (const name of order) {
        run.count(run.faults, name);
        run.phase = name;
        await phases[name]!();
        // Let each fault's closes and reconnects settle before the next.
        await until('every slot open again', () => slots.every((s) => s.open), 30_000);
        await sleep(1000);
      }
      round++;
    } while (options.minutes > 0 && Date.now() - started < options.minutes * 60_000);

    run.phase = 'after';
    // After the storm: everyone back, every echo and delivery caught up.
    if (!(await until('every slot open again', () => slots.every((s) => s.open), 30_000))) {
      run.violation(`after the storm ${slots.filter((s) => !s.open).map((s) => s.name).slice(0, 10).join(', ')} … not open again`);
    }
    for (const s of slots) if (s.mustClose) run.violation(`${s.name}: ${s.mustClose.why}, but its connection stayed open`);
    clearInterval(ticker);
    publishing = false;
    await publisher;
    const last = run.seq - 1;
    await until('echoes and deliveries caught up', () => slots.every((s) => !s.open || (s.echoed === s.sent && s.lastSeq === last)), 20_000);
    for (const s of slots) {
      if (!s.open) continue;
      if (s.echoed !== s.sent) run.violation(`${s.name}: ${s.sent - s.echoed} of ${s.sent} echoes never came`);
      if (s.lastSeq !== last) run.violation(`${s.name}: last channel delivery ${s.lastSeq}, published up to ${last}`);
    }
    const settled = await both();
    say(`settled: ${JSON.stringify(brief(settled))}`);
    const perNode = { a: slots.length - totalB, b: totalB };
    // Presence across nodes, as Wsfpm\Client::members() asks it from either node, after Redis lost everything once.
    for (const n of ['a', 'b'] as const) {
      const res = await fetch(`http://${nodes[n].control.replace(/^tcp:/, '')}/channels/${CHANNEL}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      const members = ((await res.json()) as { members?: string[] }).members ?? [];
      if (members.length !== slots.length) run.violation(`node ${n}: the channel has ${members.length} members across nodes, ${slots.length} are open`);
    }
    for (const n of ['a', 'b'] as const) {
      if (settled[n].members !== perNode[n]) run.violation(`node ${n}: hub holds ${settled[n].members} members for ${perNode[n]} open connections`);
      if (settled[n].channels !== 1) run.violation(`node ${n}: ${settled[n].channels} channels, expected 1`);
    }
    const untouched = slots.filter((s) => s.life === s.firstLife).length;

    await closeAll();
    const final = await both();
    say(`final: ${JSON.stringify(brief(final))}`);
    for (const n of ['a', 'b'] as const) {
      const b = baseline[n];
      const f = final[n];
      if (!f.gc) run.violation(`node ${n}: no GC exposed, heap not comparable`);
      if (f.fds > b.fds + FD_SLACK) run.violation(`node ${n}: ${f.fds} open fds after the storm, ${b.fds} before`);
      if (f.heapUsed > b.heapUsed + HEAP_SLACK) run.violation(`node ${n}: heap ${mib(f.heapUsed)} MiB after GC, ${mib(b.heapUsed)} MiB before`);
      if (f.channels !== 0) run.violation(`node ${n}: ${f.channels} channels left`);
      for (const e of f.errors) run.violation(`node ${n} logged an error without a code: ${e}`);
    }
    return {
      seconds: Math.round((Date.now() - started) / 1000),
      slots: slots.length,
      lives: run.lives,
      untouched,
      echoes: run.echoes,
      deliveries: run.deliveries,
      published: run.seq,
      faults: run.faults,
      closes: run.closes,
      refusals: run.refusals,
      abusers: run.abusers,
      baseline,
      loaded,
      settled,
      final,
      violations: run.violations,
    };
  } finally {
    stopping = true;
    await Promise.all(children.map((c) => c.stop(5000)));
    await poolB.stop();
    await redis.stop();
    stopping = false;
  }
}

const mib = (bytes: number): number => +(bytes / 1024 / 1024).toFixed(1);

/** The figures of a stats answer worth printing; `codes` adds the log codes counted so far. */
export function brief(s: { a: DaemonStats; b: DaemonStats }, codes = false): Record<NodeName, Partial<DaemonStats> & { heapMiB: number; rssMiB: number }> {
  const one = (d: DaemonStats) => ({ fds: d.fds, members: d.members, channels: d.channels, heapMiB: mib(d.heapUsed), rssMiB: mib(d.rss), ...(codes ? { codes: d.codes } : {}) });
  return { a: one(s.a), b: one(s.b) };
}

type Stats = (n: NodeName) => Promise<DaemonStats>;

/**
 * SIGKILL of workers of A's master: bound connections' own (each must close
 * 1011, and only it), then a few others (idle, or running some events-mode
 * request: that connection may close 1011).
 */
async function killWorkers(run: Run, slots: Slot[], stats: Stats, say: (l: string) => void): Promise<void> {
  const master = (await stats('a')).managedPid;
  for (let i = 0; i < 6; i++) {
    const victim = pick(slots.filter((s) => s.node === 'a' && s.mode === 'bound' && s.open && s.pid > 0 && !s.mustClose));
    if (victim && kill(victim.pid, 'SIGKILL')) {
      victim.mustClose = { code: 1011, by: Date.now() + FAULT_WINDOW_MS, why: `its worker ${victim.pid} was killed` };
      run.count(run.faults, 'worker-of-bound');
    }
    const held = new Set(slots.map((s) => s.pid));
    const other = pick((await childrenOf(master)).filter((p) => !held.has(p)));
    if (other) {
      // It may be running an event, the open request of a bound connection, or a close event.
      run.window('a', ['events', 'bound'], [1011], `worker ${other} killed`);
      if (kill(other, 'SIGKILL')) run.count(run.faults, 'worker-other');
    }
    await sleep(1000);
  }
  await until('the victims closed', () => slots.every((s) => !s.mustClose || !s.open), FAULT_WINDOW_MS);
  say(`workers: ${run.faults['worker-of-bound'] ?? 0} of bound connections and ${run.faults['worker-other'] ?? 0} others killed`);
}

async function sighup(run: Run, nodes: Record<NodeName, ServerChild>, stats: Stats, say: (l: string) => void): Promise<void> {
  for (let i = 0; i < 2; i++) {
    for (const n of ['a', 'b'] as const) {
      const before = (await stats(n)).reloads;
      nodes[n].proc.kill('SIGHUP');
      run.count(run.faults, 'sighup-sent');
      if (!(await until(`node ${n} reloaded`, async () => (await stats(n)).reloads > before, 5000))) run.violation(`node ${n} did not reload on SIGHUP`);
    }
    await sleep(1000);
  }
  say('sighup: both nodes reloaded twice');
}

/**
 * redis-server SIGKILLed for 3 s and started again on its port. B may miss
 * what A published meanwhile; A's own subscribers must miss nothing.
 */
async function redisOutage(run: Run, redis: RedisServer, slots: Slot[], stats: Stats, say: (l: string) => void): Promise<void> {
  // A publish in flight when Redis dies may or may not cross.
  const outage: Outage = { from: Math.max(0, run.seq - 1), to: Number.MAX_SAFE_INTEGER };
  run.outages.push(outage);
  await redis.kill();
  // Connections come and go meanwhile: the registry Redis lost must be written again from what is open then.
  for (let i = 0; i < 3; i++) {
    await sleep(1000);
    for (let k = 0; k < 10; k++) pick(slots.filter((s) => s.open))?.bounce();
  }
  await redis.resume();
  const resumedAt = run.seq;
  const b = slots.filter((s) => s.node === 'b');
  const crossed = await until('a delivery crossed to B again', async () => (await stats('a')).broker === true && (await stats('b')).broker === true && b.some((s) => s.open && s.lastSeq >= resumedAt), 20_000);
  if (!crossed) run.violation('no channel delivery reached node B within 20 s of Redis coming back');
  // From the first sequence number B saw again, nothing may be lost.
  outage.to = Math.min(...b.filter((s) => s.open && s.lastSeq >= resumedAt).map((s) => s.lastSeq));
  say(`redis: down 3 s; B may have missed ${outage.from}..${outage.to - 1}`);
}

/** SIGKILL of A's managed master: A's bound connections must close 1012; it restarts and they reconnect. */
async function killMaster(run: Run, slots: Slot[], stats: Stats, say: (l: string) => void): Promise<void> {
  const pid = (await stats('a')).managedPid;
  for (const s of slots) if (s.node === 'a' && s.mode === 'bound' && s.open) s.mustClose = { code: 1012, by: Date.now() + FAULT_WINDOW_MS, why: 'the managed master died' };
  // Bound connections still in their upgrade may see the worker die (1011); an event running then fails (1011).
  // Events wait for php-fpm to come back up to --event-timeout, then close 1011 (WSFPM_ERR_EVENT_TIMEOUT): the windows last until after the restart.
  const windows = [run.window('a', ['bound'], [1011, 1012], 'master killed'), run.window('a', ['events'], [1011], 'master killed')];
  kill(pid, 'SIGKILL');
  // The supervisor's backoff doubles from 1 s to 30 s while the master dies again within a minute (src/fpm/supervisor.ts).
  const restarted = await until('the master restarted', async () => {
    const p = (await stats('a')).managedPid;
    return p !== 0 && p !== pid;
  }, 45_000);
  if (!restarted) run.violation('the managed master did not restart within 45 s');
  for (const w of windows) w.until = Date.now() + FAULT_WINDOW_MS;
  say(`master: ${pid} killed, restarted: ${restarted}`);
}

// ---- Abusive clients --------------------------------------------------------------------------------------------

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

/** A masked client frame. */
function frame(opcode: number, payload: Buffer): Buffer {
  const mask = Buffer.from([1, 2, 3, 4]);
  return Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | payload.length]), mask, Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!))]);
}

/**
 * A raw client: sends an upgrade (or `head`), then `after(socket)` once the
 * 101 came; resolves with the HTTP status and the code of the server's close
 * frame (null when it sent none) once the server closed or `ms` passed.
 */
function raw(port: number, head: string, ms: number, after?: (s: net.Socket) => void, drip?: boolean): Promise<{ status: number; close: number | null }> {
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    let upgraded = false;
    const s = net.connect(port, '127.0.0.1', () => {
      if (!drip) return void s.write(head);
      // Slowloris: the request line and a header every 300 ms, never the blank line.
      s.write(head.slice(0, head.indexOf('\r\n') + 2));
      const t = setInterval(() => (s.writable ? s.write('X-Drip: 1\r\n') : clearInterval(t)), 300);
      s.once('close', () => clearInterval(t));
    });
    const timer = setTimeout(() => s.destroy(), ms);
    s.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (!upgraded && got.includes('\r\n\r\n') && /^HTTP\/1\.1 101 /.test(got.toString('latin1'))) {
        upgraded = true;
        after?.(s);
      }
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      const text = got.toString('latin1');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      resolve({ status, close: status === 101 ? closeCode(got.subarray(text.indexOf('\r\n\r\n') + 4)) : null });
    });
  });
}

/** The code of the first close frame in what a server sent. */
function closeCode(body: Buffer): number | null {
  for (let i = 0; i + 1 < body.length; ) {
    const op = body[i]! & 0x0f;
    let len = body[i + 1]! & 0x7f;
    let at = i + 2;
    if (len === 126) (len = body.readUInt16BE(at)), (at += 2);
    else if (len === 127) (len = Number(body.readBigUInt64BE(at))), (at += 8);
    if (op === 0x8) return at + 2 <= body.length ? body.readUInt16BE(at) : null;
    i = at + len;
  }
  return null;
}

interface Abuser {
  kind: string;
  /** Outcomes that are documented for it ("408", "close 1009", "dropped", …). */
  expect: string[];
  run(port: number): Promise<string>;
}

const upgradeHead = (port: number, target: string, headers = `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n`): string =>
  `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${headers}\r\n`;

const outcome = (r: { status: number; close: number | null }): string => (r.status === 101 ? (r.close === null ? 'dropped' : `close ${r.close}`) : r.status === 0 ? 'dropped' : String(r.status));

/** After the 101: wait for the script's "ready", then `bytes`. */
const afterReady = (bytes: Buffer) => (s: net.Socket): void => void setTimeout(() => s.write(bytes), 200);

const ABUSERS: Abuser[] = [
  { kind: 'slowloris', expect: ['408', 'dropped'], run: async (port) => outcome(await raw(port, upgradeHead(port, '/chaos-events.php'), 10_000, undefined, true)) },
  { kind: 'oversize', expect: ['close 1009'], run: async (port) => {
    // A 70,000-byte text frame (over --max-message 64 KiB), length in 16 bits.
    const payload = Buffer.alloc(70_000, 0x61);
    const head = Buffer.from([0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
    head.writeUInt32BE(payload.length, 6);
    const masked = Buffer.from(payload.map((b, i) => b ^ [1, 2, 3, 4][i % 4]!));
    return outcome(await raw(port, upgradeHead(port, '/chaos-events.php'), 10_000, afterReady(Buffer.concat([head, masked]))));
  } },
  { kind: 'reserved-opcode', expect: ['close 1002'], run: async (port) => outcome(await raw(port, upgradeHead(port, '/chaos-events.php'), 10_000, afterReady(frame(0x3, Buffer.from('x'))))) },
  { kind: 'unmasked', expect: ['close 1002'], run: async (port) => outcome(await raw(port, upgradeHead(port, '/chaos-events.php'), 10_000, afterReady(Buffer.from([0x81, 2, 0x68, 0x69])))) },
  { kind: 'invalid-utf8', expect: ['close 1007'], run: async (port) => outcome(await raw(port, upgradeHead(port, '/chaos-bound.php?ch=abuse'), 10_000, afterReady(frame(0x1, Buffer.from([0xc3, 0x28]))))) },
  { kind: 'rate-flood', expect: ['close 1008'], run: async (port) => outcome(await raw(port, upgradeHead(port, '/chaos-events.php?ch=abuse'), 10_000, afterReady(Buffer.concat(Array.from({ length: 400 }, () => frame(0x1, Buffer.from('flood'))))))) },
  { kind: 'bad-handshake', expect: ['400'], run: async (port) => outcome(await raw(port, upgradeHead(port, '/chaos-events.php', 'Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n'), 10_000)) },
  { kind: 'handshake-flood', expect: ['dropped'], run: (port) => new Promise((resolve) => {
    // The whole upgrade, then gone before any answer.
    const s = net.connect(port, '127.0.0.1', () => {
      s.write(upgradeHead(port, Math.random() < 0.5 ? '/chaos-events.php' : '/chaos-bound.php?ch=abuse'));
      setTimeout(() => s.destroy(), Math.random() * 20);
    });
    s.on('error', () => {});
    s.on('close', () => resolve('dropped'));
  }) },
  { kind: 'abrupt-drop', expect: ['dropped'], run: async (port) => {
    // Accepted, then half a frame and the socket torn down.
    await raw(port, upgradeHead(port, Math.random() < 0.5 ? '/chaos-events.php' : '/chaos-bound.php?ch=abuse'), 10_000, (s) => setTimeout(() => {
      s.write(frame(0x1, Buffer.from('half a message')).subarray(0, 5));
      s.destroy();
    }, 100 + Math.random() * 200));
    return 'dropped';
  } },
];

/**
 * `count` abusers at once, kinds in turn, against both nodes (mostly A).
 * A refusal for lack of room (503) is documented for any of them.
 */
async function abuse(run: Run, count: number, nodes: Record<NodeName, ServerChild>, say: (l: string) => void): Promise<void> {
  await Promise.all(Array.from({ length: count }, async (_, i) => {
    const a = ABUSERS[i % ABUSERS.length]!;
    const port = (i % 5 === 4 ? nodes.b : nodes.a).port;
    const got = await a.run(port);
    run.count(run.abusers, `${a.kind}: ${got}`);
    if (!a.expect.includes(got) && got !== '503') run.violation(`abuser ${a.kind}: ${got}, expected ${a.expect.join(' or ')}`);
  }));
  say(`abusers: ${count} at once`);
}
