/**
 * `node --import tsx bench/startup.ts [RUNS] [ENTRY ...]`: how long the command line takes to start, and its
 * memory once listening. An ENTRY is a file node runs: a clone's bin/wsfpm.js (src/ through tsx), dist/cli.js
 * (the compiled JavaScript; `npm run build` first), or an installed package's bin/wsfpm.js; `nocache:ENTRY`
 * runs it with TSX_DISABLE_CACHE=1 (tsx's first start after a change). Default: 20 runs of this repository's
 * bin/wsfpm.js, nocache: of it, and dist/cli.js. Each run, entries in turn: `--version` until exit, then a
 * daemon start until its "wsfpm listening" line, its RSS (VmRSS of the daemon and, apart, of any processes
 * under it) and a SIGTERM. No php-fpm is needed: the daemon connects to --fpm only when a request comes.
 * Not part of `npm run bench` (docs/performance.md, "Start-up").
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { childPids } from './lib/proc.ts';
import { now, summarize } from './lib/stats.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const runs = Number(process.argv[2] ?? 20);
const given = process.argv.slice(3);
const specs = given.length ? given : [path.join(REPO, 'bin', 'wsfpm.js'), 'nocache:' + path.join(REPO, 'bin', 'wsfpm.js'), path.join(REPO, 'dist', 'cli.js')];
const cwd = mkdtempSync(path.join(os.tmpdir(), 'wsfpm-startup-'));
/** The machine's WSFPM_* settings take no part. */
const baseEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WSFPM_')));

interface Entry {
  name: string;
  args: string[];
  env: NodeJS.ProcessEnv;
}
const entries: Entry[] = specs.map((spec) => {
  const nocache = spec.startsWith('nocache:');
  const file = path.resolve(nocache ? spec.slice('nocache:'.length) : spec);
  return { name: (nocache ? 'nocache:' : '') + path.relative(process.cwd(), file), args: [file], env: nocache ? { ...baseEnv, TSX_DISABLE_CACHE: '1' } : baseEnv };
});

function vmRssKiB(pid: number): number {
  try {
    return Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

function descendants(pid: number): number[] {
  const out: number[] = [];
  for (const c of childPids(pid)) out.push(c, ...descendants(c));
  return out;
}

async function version(e: Entry): Promise<number> {
  const t0 = now();
  const child = spawn(process.execPath, [...e.args, '--version'], { cwd, env: e.env, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => void (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  if (code !== 0 || !out.startsWith('wsfpm ')) throw new Error(`${e.name} --version: exit ${code}, ${out}`);
  return now() - t0;
}

async function serve(e: Entry): Promise<{ ms: number; rssKiB: number; childrenKiB: number }> {
  const t0 = now();
  const child = spawn(process.execPath, [...e.args, '--fpm', 'tcp:127.0.0.1:9', '--port', '0', '--control', 'tcp:127.0.0.1:0'], { cwd, env: e.env, stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  let out = '';
  const ms = await new Promise<number>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('"wsfpm listening"')) resolve(now() - t0);
    });
    void exited.then((code) => reject(new Error(`${e.name} exited ${code} before listening: ${out}`)));
  });
  const rssKiB = vmRssKiB(child.pid!);
  const childrenKiB = descendants(child.pid!).reduce((sum, p) => sum + vmRssKiB(p), 0);
  child.kill('SIGTERM');
  const code = await exited;
  if (code !== 0) throw new Error(`${e.name} exited ${code} on SIGTERM`);
  return { ms, rssKiB, childrenKiB };
}

const results = new Map(entries.map((e) => [e.name, { version: [] as number[], listen: [] as number[], rss: [] as number[], children: [] as number[] }]));
try {
  for (const e of entries) await version(e); // fills tsx's cache, so "cache warm" is warm from the first run
  for (let i = 0; i < runs; i++) {
    for (const e of entries) {
      const r = results.get(e.name)!;
      r.version.push(await version(e));
      const s = await serve(e);
      r.listen.push(s.ms);
      r.rss.push(s.rssKiB / 1024);
      r.children.push(s.childrenKiB / 1024);
    }
  }
} finally {
  rmSync(cwd, { recursive: true, force: true });
}

const f = (xs: number[], digits = 0): string => {
  const s = summarize(xs);
  return `${s.p50.toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${s.max.toFixed(digits)})`;
};
console.log(`node ${process.version}, ${os.cpus().length} cores, ${runs} runs each; median (min–max)\n`);
console.log('| entry | `--version` ms | start to listening ms | RSS after listening MiB | RSS of child processes MiB |');
console.log('|---|---|---|---|---|');
for (const [name, r] of results) console.log(`| ${name} | ${f(r.version)} | ${f(r.listen)} | ${f(r.rss, 1)} | ${f(r.children, 1)} |`);
