/**
 * `node --import tsx bench/profile-summary.ts FILE.cpuprofile [TOP] [SKIP_MS]`:
 * prints the top self-time and inclusive-time functions and the time per
 * module of a V8 CPU profile (as written by `npm run bench -- … --profile`),
 * leaving out the first SKIP_MS of samples (start-up).
 */
import { formatProfile, summarizeProfile } from './lib/profile.ts';

const file = process.argv[2];
if (!file) {
  console.error('usage: node --import tsx bench/profile-summary.ts FILE.cpuprofile [TOP] [SKIP_MS]');
  process.exit(2);
}
console.log(formatProfile(summarizeProfile(file, Number(process.argv[3] ?? 25), Number(process.argv[4] ?? 0))));
