/**
 * `node --import tsx bench/fpm-pss.ts [SIZES]` (default 250,1000,2500,5000):
 * how much memory an idle php-fpm worker costs as a function of the pool's
 * size. For each size it starts a pm-static FpmPool, waits for every worker,
 * and prints the mean PSS and Private_Dirty of the workers, overall and for
 * the first and last tenth forked (pids in order). Not part of `npm run
 * bench`: it explains the hold scenario's memory figure (docs/performance.md).
 */
import { childPids, smapsRollup } from './lib/proc.ts';
import { now } from './lib/stats.ts';
import { startPool, waitWorkers } from './lib/systems.ts';

const sizes = (process.argv[2] ?? '250,1000,2500,5000').split(',').map(Number);

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / (xs.length || 1);

console.log('| pool size | spawn s | worker PSS kB | Private_Dirty kB | first 10% forked, PSS kB | last 10% forked, PSS kB | master PSS kB |');
console.log('|---|---|---|---|---|---|---|');
for (const size of sizes) {
  const t0 = now();
  const pool = await startPool(size);
  try {
    const n = await waitWorkers(pool, size, 180_000);
    const spawn = (now() - t0) / 1000;
    const pids = childPids(pool.pid!).sort((a, b) => a - b);
    const stats = pids.map((p) => smapsRollup(p) ?? {});
    const pss = stats.map((s) => s.Pss ?? 0);
    const dirty = stats.map((s) => s.Private_Dirty ?? 0);
    const tenth = Math.max(1, Math.floor(pids.length / 10));
    const master = smapsRollup(pool.pid!)?.Pss ?? 0;
    console.log(`| ${size}${n < size ? ` (${n} forked)` : ''} | ${spawn.toFixed(1)} | ${mean(pss).toFixed(0)} | ${mean(dirty).toFixed(0)} | ${mean(pss.slice(0, tenth)).toFixed(0)} | ${mean(pss.slice(-tenth)).toFixed(0)} | ${master} |`);
  } finally {
    await pool.stop();
  }
}
