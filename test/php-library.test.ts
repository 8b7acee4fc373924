/** The PHP helper library's own codec tests (php-cli, no framework), run as part of npm test. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { it } from 'node:test';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

it('php/tests/run.php passes under php-cli', () => {
  const r = spawnSync('php', ['-n', path.join(ROOT, 'php/tests/run.php')], { encoding: 'utf8' });
  assert.equal(r.error, undefined, `php-cli not runnable: ${r.error?.message}`);
  const last = r.stdout.trim().split('\n').pop() ?? '';
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(last, /^\d+ passed, 0 failed$/);
});
