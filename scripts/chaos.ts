/**
 * Chaos, the long run: `npm run chaos -- --minutes N [--abusers 200]`.
 * The same load, faults and checks as test/chaos.test.ts
 * (test/helpers/chaos.ts), with the faults in random order round after
 * round until N minutes have passed. Prints progress to stderr and the
 * report as JSON; exit code 1 when anything was violated.
 */
import { brief, DEFAULT_CHAOS, runChaos } from '../test/helpers/chaos.ts';
import { arg } from './args.ts';

const minutes = arg('minutes', 5);
const abusers = arg('abusers', DEFAULT_CHAOS.abusers);
const report = await runChaos({ ...DEFAULT_CHAOS, minutes, abusers, say: (line) => process.stderr.write(`chaos: ${line}\n`) });
const { baseline, loaded, settled, final, ...rest } = report;
console.log(JSON.stringify({ minutes, ...rest, baseline: brief(baseline), loaded: brief(loaded), settled: brief(settled), final: brief(final, true) }, null, 2));
process.exitCode = report.violations.length === 0 ? 0 : 1;
