/**
 * The PHP library as a composer package (php/composer.json, wsfpm/wsfpm): Debian's `composer validate
 * --strict` accepts it, and a scratch project that requires it through a path repository gets it copied into
 * vendor/ with an autoloader that finds Wsfpm\Connection. Offline: packagist is disabled, COMPOSER_HOME is a
 * temp dir. Skipped without composer (apt-get install composer), except on CI (CI=true), where it fails.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, realpathSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';

const PHP_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'php');
const COMPOSER = process.env.WSFPM_COMPOSER ?? '/usr/bin/composer';
const missing = existsSync(COMPOSER) || process.env.CI ? null : `${COMPOSER} not found: apt-get install composer (or set WSFPM_COMPOSER)`;

describe('php/ as the composer package wsfpm/wsfpm', { skip: missing ?? false, timeout: 60_000 }, () => {
  let tmp: string;
  let env: NodeJS.ProcessEnv;

  function run(cmd: string, args: string[], cwd: string) {
    const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, `${cmd} ${args.join(' ')} exited ${r.status} (${r.error?.message ?? r.signal ?? ''}):\n${r.stdout}\n${r.stderr}`);
    return r;
  }

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wsfpm-composer-'));
    // Nothing of the machine's composer set-up (auth, cache, global config) takes part.
    env = { ...process.env, COMPOSER_HOME: path.join(tmp, 'home'), COMPOSER_CACHE_DIR: path.join(tmp, 'cache'), COMPOSER_ALLOW_SUPERUSER: '1' };
  });
  after(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('passes composer validate --strict', () => {
    const r = run(COMPOSER, ['validate', '--strict', '--no-interaction'], PHP_DIR);
    assert.match(r.stdout + r.stderr, /composer\.json is valid/);
  });

  it('installs through a path repository, and the project autoloader finds Wsfpm\\Connection in vendor/', async () => {
    const project = path.join(tmp, 'site');
    await mkdir(project);
    await writeFile(
      path.join(project, 'composer.json'),
      JSON.stringify({
        name: 'example/site',
        require: { 'wsfpm/wsfpm': '*@dev' },
        repositories: [{ type: 'path', url: PHP_DIR, options: { symlink: false } }, { 'packagist.org': false }],
      }),
    );
    run(COMPOSER, ['install', '--no-interaction', '--no-progress'], project);
    const installed = path.join(project, 'vendor', 'wsfpm', 'wsfpm');
    assert.ok(!lstatSync(installed).isSymbolicLink(), 'symlink: false should copy the package');
    const probe = [
      "require 'vendor/autoload.php';",
      'echo json_encode([',
      "  'connection' => (new ReflectionClass(Wsfpm\\Connection::class))->getFileName(),",
      "  'client' => class_exists(Wsfpm\\Client::class),",
      "  'other' => class_exists('Wsfpm\\\\NoSuchClass'),",
      ']);',
    ].join('\n');
    const found = JSON.parse(run('php', ['-r', probe], project).stdout) as { connection: string; client: boolean; other: boolean };
    assert.equal(realpathSync(found.connection), realpathSync(path.join(installed, 'src', 'Connection.php')));
    assert.equal(found.client, true);
    assert.equal(found.other, false);
  });
});
