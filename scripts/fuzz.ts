/**
 * The long fuzz run of the two decoders (FastCGI records, daemon↔PHP frames):
 * `npm run fuzz -- [--count 200000] [--seed N]`. npm test runs a bounded
 * 2,000 inputs of the same generator; this runs as many as asked, each
 * target in a worker with a watchdog so a hang is reported, not waited on.
 * Exit code 1 on any exception other than the decoder's own error, any
 * disagreement with the reference parser, or a hang.
 */
import { fuzzInWorker } from '../test/helpers/bytes.ts';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i === -1 ? fallback : Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v <= 0) throw new Error(`--${name} needs a positive whole number`);
  return v;
}

const count = arg('count', 200_000);
const seed = arg('seed', Date.now() % 0xffffffff);
let failed = false;
for (const target of ['records', 'frames'] as const) {
  const started = Date.now();
  const report = await fuzzInWorker(target, seed, count, Math.max(120_000, count * 5));
  const bad = report.unexpected.length + report.mismatches.length;
  console.log(`${target}: ${report.inputs} inputs (seed ${seed}), ${report.decodeErrors} refused as malformed, ${report.emitted} emitted, ${bad} problems, ${((Date.now() - started) / 1000).toFixed(1)} s`);
  for (const line of [...report.unexpected, ...report.mismatches].slice(0, 20)) console.log(`  ${line}`);
  if (bad) failed = true;
}
process.exitCode = failed ? 1 : 0;
