/**
 * Chaos under load (test/helpers/chaos.ts): 300 connections, bound and
 * events mode on two daemons sharing a redis-server, every echo and channel
 * delivery checked, through one round of each fault: SIGKILLed workers,
 * SIGHUP, a Redis outage, a SIGKILLed managed master, 200 abusive clients.
 * The longer run is `npm run chaos -- --minutes N`.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { brief, DEFAULT_CHAOS, runChaos } from './helpers/chaos.ts';

it('300 connections through worker and master kills, SIGHUP, a Redis outage and 200 abusers: nothing lost, every close documented, nothing leaked', { timeout: 240_000 }, async () => {
  const report = await runChaos({ ...DEFAULT_CHAOS, say: (line) => process.env.WSFPM_TEST_DEBUG && process.stderr.write(`chaos: ${line}\n`) });
  const { baseline, loaded, settled, final, ...rest } = report;
  if (process.env.WSFPM_TEST_DEBUG) process.stderr.write(`${JSON.stringify({ ...rest, baseline: brief(baseline), loaded: brief(loaded), settled: brief(settled), final: brief(final, true) }, null, 1)}\n`);
  assert.deepEqual(report.violations, []);
  // The faults really hit: worker kills closed their connections, the master's death closed A's bound ones.
  assert.ok((report.closes['workers: a/bound:1011'] ?? 0) >= 1, 'a killed worker closed its connection with 1011');
  assert.ok((report.closes['master: a/bound:1012'] ?? 0) >= DEFAULT_CHAOS.slots.a.bound, 'the master\'s death closed every bound connection of A with 1012');
  assert.ok(report.untouched >= DEFAULT_CHAOS.slots.b.bound + DEFAULT_CHAOS.slots.b.events, 'connections no fault hit kept working from start to end');
  assert.ok(report.deliveries > 0 && report.echoes > 0);
});
