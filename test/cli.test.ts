/** The command line as a user runs it: help, version, config errors, and a real serve. */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, it } from 'node:test';
import { FIXTURES, open, refusal, startDaemon, startPool } from './helpers/harness.ts';
import { VERSION } from '../src/version.ts';
import type { FpmPool } from '../src/fpm/pool.ts';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'wsfpm.js');
let pool: FpmPool;
let tmp: string;

before(async () => {
  pool = await startPool(2);
  tmp = await mkdtemp(path.join(os.tmpdir(), 'wsfpm-cli-'));
});
after(async () => {
  await pool?.stop();
  await rm(tmp, { recursive: true, force: true });
});

function run(args: string[], env: Record<string, string> = {}, cwd = tmp) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', cwd, env: { PATH: process.env.PATH ?? '', ...env } });
}

it('--help lists every option with its variable and default; --version prints the version', () => {
  const help = run(['--help']);
  assert.equal(help.status, 0);
  for (const s of ['--fpm', 'WSFPM_FPM', '--max-message', 'WSFPM_MAX_MESSAGE', '--allow-origins', 'wsfpm demo']) assert.ok(help.stdout.includes(s), s);
  const version = run(['--version']);
  assert.equal(version.status, 0);
  assert.match(version.stdout, /^wsfpm \d+\.\d+\.\d+\n$/);
});

it('a bad value stops start-up with exit code 2 and a message naming the flag and the variable', () => {
  const port = run(['--port', '99999']);
  assert.equal(port.status, 2);
  assert.match(port.stderr, /--port.*WSFPM_PORT.*0 to 65535/);
  const env = run([], { WSFPM_MAX_MESSAGE: 'lots' });
  assert.equal(env.status, 2);
  assert.match(env.stderr, /WSFPM_MAX_MESSAGE="lots".*--max-message/);
  const fpm = run(['--fpm', 'php-fpm.sock']);
  assert.equal(fpm.status, 2);
  assert.match(fpm.stderr, /--fpm.*unix:/);
  const unknown = run(['--prot', '1']);
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /unknown option "--prot"/);
});

it('serves from .env settings, echoes, and exits 0 on SIGTERM', async () => {
  await writeFile(path.join(tmp, '.env'), `WSFPM_FPM=unix:${pool.socket}\nWSFPM_ROOT=${FIXTURES}\nWSFPM_PORT=0\nWSFPM_CONTROL=tcp:127.0.0.1:0\n`);
  const child = spawn(process.execPath, [BIN], { cwd: tmp, env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const address = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /"address":"http:\/\/([^"]+)"/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
  });
  const c = await open(`ws://${address}/echo.php`);
  c.ws.send('from the cli');
  assert.equal(await c.text(), 'from the cli');
  c.ws.close();
  await c.closed;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
});

it('doctor prints one verdict per line and exits 1 when a check fails, 2 on bad usage', () => {
  const usage = run(['doctor']);
  assert.equal(usage.status, 2);
  assert.match(usage.stderr, /usage: wsfpm doctor/);
  const down = run(['doctor', 'http://127.0.0.1:9/chat.php']);
  assert.equal(down.status, 1);
  assert.match(down.stdout, /^FAIL  cannot reach http:\/\/127\.0\.0\.1:9: nothing listens/m);
});

it('doctor --token, or WSFPM_DOCTOR_TOKEN, reaches the daemon: its version is shown', async () => {
  const token = 'cli-doctor-token-0123';
  const daemon = await startDaemon(pool, { doctorToken: token });
  try {
    // Not spawnSync: the daemon answering is in this process.
    const doctor = (args: string[], env: Record<string, string> = {}): Promise<string> => new Promise((resolve) => {
      const child = spawn(process.execPath, [BIN, 'doctor', `http://127.0.0.1:${daemon.port}/echo.php`, ...args], { cwd: tmp, env: { PATH: process.env.PATH ?? '', ...env } });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.once('exit', () => resolve(out));
    });
    const shown = new RegExp(`^OK    the upgrade reaches wsfpm ${VERSION.replaceAll('.', '\\.')} \\(proxy at 127\\.0\\.0\\.1\\)$`, 'm');
    assert.match(await doctor(['--token', token]), shown);
    assert.match(await doctor([], { WSFPM_DOCTOR_TOKEN: token }), shown);
    assert.match(await doctor([]), /^OK    the upgrade reaches wsfpm$/m);
  } finally {
    await daemon.close();
  }
  assert.match(run(['doctor', 'http://127.0.0.1:9/x.php', '--token']).stderr, /--token takes the daemon's --doctor-token/);
});

it('demo takes the name of an example and refuses others', () => {
  const bad = run(['demo', 'nope']);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unknown demo "nope": one of echo, chat, chat-events, progress/);
});

it('SIGHUP re-reads .env: reloadable settings apply to new connections, the others are named as needing a restart', async () => {
  const env = path.join(tmp, 'reload');
  await mkdir(env, { recursive: true });
  const base = `WSFPM_FPM=unix:${pool.socket}\nWSFPM_ROOT=${FIXTURES}\nWSFPM_PORT=0\nWSFPM_CONTROL=tcp:127.0.0.1:0\n`;
  await writeFile(path.join(env, '.env'), base);
  const child = spawn(process.execPath, [BIN], { cwd: env, env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => void (out += d.toString()));
  try {
    const address = await new Promise<string>((resolve, reject) => {
      const t = setInterval(() => {
        const m = /"address":"http:\/\/([^"]+)"/.exec(out);
        if (m) {
          clearInterval(t);
          resolve(m[1]!);
        }
      }, 20);
      child.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
    });
    const before = await refusal(`ws://${address}/echo.php`, { origin: 'https://app.example' });
    assert.equal(before.status, 403);
    await writeFile(path.join(env, '.env'), base + 'WSFPM_ALLOW_ORIGINS=https://app.example\nWSFPM_MAX_MESSAGE=2m\n');
    child.kill('SIGHUP');
    for (let i = 0; i < 100 && !out.includes('settings reloaded'); i++) await new Promise((r) => setTimeout(r, 20));
    const line = JSON.parse(out.split('\n').find((l) => l.includes('settings reloaded'))!) as { applied: string[]; needRestart: string[] };
    assert.deepEqual(line.applied, ['origins']);
    assert.deepEqual(line.needRestart, ['maxMessage']);
    const c = await open(`ws://${address}/echo.php`, { origin: 'https://app.example' });
    c.ws.send('after reload');
    assert.equal(await c.text(), 'after reload');
    c.ws.close();
    await c.closed;
  } finally {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
});
