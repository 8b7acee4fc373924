/**
 * The npm package as a user gets it: `npm pack` (which builds dist/ through prepack), `npm install` of the
 * tarball into an empty project, then `npx wsfpm --version` and `npx wsfpm demo` with its own php-fpm, spoken
 * to over a real websocket and stopped with SIGTERM. Needs the npm registry for the dependencies.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { open, withTimeout } from './helpers/harness.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { version } = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string };

/** The environment without npm's own npm_* variables (set when this runs under `npm test`) or the machine's WSFPM_*. */
const ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(npm_|WSFPM_)/i.test(k)));

function run(cmd: string, args: string[], cwd: string, options: SpawnSyncOptions = {}) {
  const r = spawnSync(cmd, args, { cwd, env: ENV, encoding: 'utf8', timeout: 60_000, ...options });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} exited ${r.status} (${r.signal ?? 'no signal'}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

describe('the npm package, installed from its tarball', { timeout: 150_000 }, () => {
  let tmp: string;
  let app: string;

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'wsfpm-package-'));
    run('npm', ['pack', '--pack-destination', tmp], REPO);
    const tarball = readdirSync(tmp).find((f) => /^wsfpm-.*\.tgz$/.test(f));
    assert.ok(tarball, 'npm pack wrote no tarball');
    app = path.join(tmp, 'app');
    await mkdir(app);
    await writeFile(path.join(app, 'package.json'), '{ "private": true }\n');
    run('npm', ['install', '--no-audit', '--no-fund', path.join(tmp, tarball)], app, { timeout: 90_000 });
  });
  after(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('holds compiled JavaScript with types, and no compiler comes with it', () => {
    const pkg = path.join(app, 'node_modules', 'wsfpm');
    for (const f of ['dist/cli.js', 'dist/index.js', 'dist/index.d.ts', 'bin/wsfpm.js', 'php/autoload.php', 'examples/echo/echo.php']) {
      assert.ok(existsSync(path.join(pkg, f)), `${f} is missing from the package`);
    }
    // Without src/ the bin takes the dist/ path, which is what this test is about.
    assert.ok(!existsSync(path.join(pkg, 'src')), 'src/ was packed');
    for (const compiler of ['tsx', 'typescript', 'esbuild']) {
      assert.ok(!existsSync(path.join(app, 'node_modules', compiler)), `${compiler} was installed as a dependency`);
    }
  });

  it('npx wsfpm --version prints the package version', () => {
    // --no: never fetch a package called wsfpm from the registry when the local one is missing; `--` because
    // npm would read a --version placed right after --no as its own.
    const r = run('npx', ['--no', '--', 'wsfpm', '--version'], app);
    assert.equal(r.stdout, `wsfpm ${version}\n`);
  });

  it('npx wsfpm demo serves the echo demo with its own php-fpm and stops cleanly on SIGTERM', async () => {
    const child = spawn('npx', ['--no', '--', 'wsfpm', 'demo', '--port', '0', '--control', 'tcp:127.0.0.1:0', '--max-connections', '2'], {
      cwd: app,
      env: ENV,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => void (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => void (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    // npx does not pass SIGTERM on to the daemon, so the signal goes to the daemon itself (its pid is in its log),
    // as systemd would send it.
    let daemonPid: number | undefined;
    try {
      const listening = await withTimeout(
        new Promise<{ address: string; pid: number }>((resolve, reject) => {
          const t = setInterval(() => {
            const line = out.split('\n').find((l) => l.includes('"wsfpm listening"'));
            if (line) {
              clearInterval(t);
              resolve(JSON.parse(line) as { address: string; pid: number });
            }
          }, 20);
          void exited.then((code) => {
            clearInterval(t);
            reject(new Error(`npx wsfpm demo exited ${code}:\n${out}`));
          });
        }),
        30_000,
        'the demo listening',
      );
      daemonPid = listening.pid;
      assert.match(out, /demo: scripts in .*node_modules\/wsfpm\/examples\/echo/);
      const c = await open(`${listening.address.replace(/^http/, 'ws')}/echo.php`);
      c.ws.send('from the package');
      assert.equal(await c.text(), 'echo: from the package');
      c.ws.close();
      await c.closed;
      process.kill(daemonPid, 'SIGTERM');
      assert.equal(await withTimeout(exited, 20_000, 'npx exiting after SIGTERM'), 0, out);
      assert.match(out, /"msg":"stopped"/);
    } finally {
      // After a failure: SIGTERM first, so the daemon still stops its php-fpm (a master in a process group of its own).
      if (child.exitCode === null && child.signalCode === null) {
        if (daemonPid) process.kill(daemonPid, 'SIGTERM');
        await withTimeout(exited, 15_000, 'npx exiting').catch(() => {
          if (daemonPid) process.kill(daemonPid, 'SIGKILL');
          child.kill('SIGKILL');
        });
      }
    }
  });
});
