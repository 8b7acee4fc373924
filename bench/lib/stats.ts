/** Latency summaries and the result rows every scenario returns. */

export interface Summary {
  n: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function summarize(samples: number[]): Summary {
  const s = [...samples].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / (s.length || 1);
  return { n: s.length, mean, p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99), max: s[s.length - 1] ?? NaN };
}

/** Monotonic ms with µs resolution (no BigInt per call, which would load the client on hot paths). */
export const now = (): number => performance.now();

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * One line of the result table: a wsfpm figure, the raw ws figure of the
 * same run, and the target; for the echo scenarios also the floor's
 * (bench/lib/floor.ts: php-fpm and the PHP library with no daemon).
 */
export interface Row {
  scenario: string;
  metric: string;
  unit: string;
  wsfpm: number | null;
  raw: number | null;
  /** wsfpm / raw (for latencies, lower is better; for rates, higher). */
  ratio: number | null;
  /** The same figure without the daemon (rtt, throughput), or null. */
  floor: number | null;
  /** wsfpm / floor: what the daemon adds (for latencies, lower is better; for rates, higher). */
  floorRatio: number | null;
  /** The target, in words, or '' when there is none. */
  target: string;
  /** true met, false missed, null not applicable. */
  met: boolean | null;
  note?: string;
}

export interface ScenarioResult {
  rows: Row[];
  /** Everything measured, for latest.json. */
  details: Record<string, unknown>;
  skipped?: string;
}

const ratioOf = (a: number | null, b: number | null): number | null => (a !== null && b !== null && b !== 0 && Number.isFinite(a) && Number.isFinite(b) ? a / b : null);

export function row(scenario: string, metric: string, unit: string, wsfpm: number | null, raw: number | null, target = '', met: boolean | null = null, note?: string): Row {
  return { scenario, metric, unit, wsfpm, raw, ratio: ratioOf(wsfpm, raw), floor: null, floorRatio: null, target, met, ...(note ? { note } : {}) };
}

/** The row with the floor's figure of the same run beside it. */
export function withFloor(r: Row, floor: number | null): Row {
  return { ...r, floor, floorRatio: ratioOf(r.wsfpm, floor) };
}

/** A number for the table: 3 significant digits, thousands kept whole. */
export function fmt(n: number | null | undefined): string {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  if (!Number.isFinite(n)) return String(n);
  const a = Math.abs(n);
  if (a >= 1000) return Math.round(n).toLocaleString('en-US');
  if (a >= 100) return n.toFixed(0);
  if (a >= 10) return n.toFixed(1);
  if (a >= 1) return n.toFixed(2);
  if (a === 0) return '0';
  return n.toPrecision(2);
}
