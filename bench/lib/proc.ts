/**
 * What the kernel knows about the server-side processes: CPU time from
 * /proc/PID/task/TID/schedstat (or /proc/PID/stat), PSS from /proc/PID/smaps_rollup, children
 * from /proc/PID/task/TID/children, and the open-file limit. Linux only.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/PID/stat times. */
export const CLK_TCK: number = (() => {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
})();

/** User + system CPU seconds from /proc/PID/stat (all threads; whole clock ticks, 10 ms here), or 0 once it is gone. */
export function cpuSecondsStat(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm)": state is field 3, utime 14, stime 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
  } catch {
    return 0;
  }
}

/**
 * CPU seconds a process has used so far: the sum over its threads of
 * /proc/PID/task/TID/schedstat's first field (time on CPU, ns). Preferred
 * over /proc/PID/stat's utime + stime, which come in whole clock ticks per
 * process: a php-fpm worker that ran 3 ms during a measurement reads as 0 or
 * 10 ms there, and summed over a hundred workers the error is larger than
 * the figure. Falls back to /proc/PID/stat where schedstat is missing.
 */
export function cpuSeconds(pid: number): number {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return 0;
  }
  let ns = 0;
  for (const tid of tasks) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // The thread ended meanwhile, or no schedstat.
      if (tid === String(pid)) return cpuSecondsStat(pid);
    }
  }
  return ns / 1e9;
}

/** Direct children of a process (all its threads' children). */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tasks) {
    try {
      for (const p of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/)) if (p) out.push(Number(p));
    } catch {
      // The thread ended meanwhile.
    }
  }
  return out;
}

/** Fields of /proc/PID/smaps_rollup, kB; null when the process is gone. */
export function smapsRollup(pid: number): Record<string, number> | null {
  try {
    const out: Record<string, number> = {};
    for (const line of readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').split('\n')) {
      const m = /^(\w+):\s+(\d+) kB/.exec(line);
      if (m) out[m[1]!] = Number(m[2]);
    }
    return out;
  } catch {
    return null;
  }
}

/** Proportional set size in kB (0 when the process is gone). */
export function pssKiB(pid: number): number {
  return smapsRollup(pid)?.Pss ?? 0;
}

export function openFileLimit(pid: number | 'self' = 'self'): { soft: number; hard: number } {
  const line = readFileSync(`/proc/${pid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max open files')) ?? '';
  const [soft, hard] = line.replace('Max open files', '').trim().split(/\s+/);
  const num = (s: string | undefined): number => (s === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(s));
  return { soft: num(soft), hard: num(hard) };
}

export function openFiles(pid: number | 'self' = 'self'): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

/** MemAvailable from /proc/meminfo, kB. */
export function memAvailableKiB(): number {
  const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** The 1-minute load average: how busy the shared machine was. */
export function loadAverage(): number {
  return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
}

/** A set of processes whose CPU time is summed: "the server side" of one system under test. */
export interface ServerSide {
  label: string;
  pids(): number[];
  /** The same processes by part (daemon, php-fpm), to see which one spends the time. */
  parts: Record<string, () => number[]>;
}

export function cpuOf(side: ServerSide): number {
  let total = 0;
  for (const pid of side.pids()) total += cpuSeconds(pid);
  return total;
}

/** CPU seconds per part of a server side. */
export function cpuParts(side: ServerSide): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, pids] of Object.entries(side.parts)) out[name] = pids().reduce((a, pid) => a + cpuSeconds(pid), 0);
  return out;
}

export function diffParts(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.keys(b).map((k) => [k, (b[k] ?? 0) - (a[k] ?? 0)]));
}
