/**
 * Summary of a V8 .cpuprofile (`node --cpu-prof`): the functions with the
 * most self time, the most total (inclusive) time, and time per module
 * (a file of src/, a package of node_modules, Node's core, GC, idle).
 */
import { readFileSync } from 'node:fs';
import { REPO_DIR } from './child.ts';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileLine {
  name: string;
  selfMs: number;
  totalMs: number;
  /** Share of busy (non-idle) time, %. */
  selfPct: number;
  totalPct: number;
}

export interface ProfileSummary {
  file: string;
  durationMs: number;
  busyMs: number;
  bySelf: ProfileLine[];
  byTotal: ProfileLine[];
  byModule: Array<{ module: string; ms: number; pct: number }>;
}

function shortUrl(url: string): string {
  let u = url.replace(/^file:\/\//, '');
  if (u.startsWith(REPO_DIR + '/')) u = u.slice(REPO_DIR.length + 1);
  return u;
}

function keyOf(f: CallFrame): string {
  const name = f.functionName || '(anonymous)';
  if (!f.url) return name;
  return `${name} ${shortUrl(f.url)}:${f.lineNumber + 1}`;
}

function moduleOf(f: CallFrame): string {
  if (!f.url) return f.functionName.startsWith('(') ? f.functionName : '(native)';
  const u = shortUrl(f.url);
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u);
  if (nm) return nm[1]!;
  if (u.startsWith('node:')) return 'node core';
  return u;
}

/**
 * `skipMs`: samples in the first `skipMs` of the profile (the process's
 * start-up: module loading, tsx) are left out, so the figures are those of
 * the work measured.
 */
export function summarizeProfile(file: string, top = 25, skipMs = 0): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  if (p.samples && p.timeDeltas && skipMs > 0) {
    // Recount hits from the samples after the cut-off.
    const hits = new Map<number, number>();
    let t = p.startTime;
    let first = p.endTime;
    for (let i = 0; i < p.samples.length; i++) {
      t += p.timeDeltas[i] ?? 0;
      if (t - p.startTime < skipMs * 1000) continue;
      if (first === p.endTime) first = t;
      hits.set(p.samples[i]!, (hits.get(p.samples[i]!) ?? 0) + 1);
    }
    for (const n of p.nodes) n.hitCount = hits.get(n.id) ?? 0;
    p.startTime = first;
  }
  const totalHits = p.nodes.reduce((a, n) => a + (n.hitCount ?? 0), 0) || 1;
  const durationMs = (p.endTime - p.startTime) / 1000;
  const msPerHit = durationMs / totalHits;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  const modules = new Map<string, number>();
  let idleHits = 0;
  for (const n of p.nodes) {
    const hits = n.hitCount ?? 0;
    if (n.callFrame.functionName === '(idle)') idleHits += hits;
    const k = keyOf(n.callFrame);
    self.set(k, (self.get(k) ?? 0) + hits);
    const m = moduleOf(n.callFrame);
    modules.set(m, (modules.get(m) ?? 0) + hits);
  }
  // Inclusive time: a node's subtree hits, counted once per function on a path (recursion).
  const root = p.nodes[0];
  const subtree = (id: number, onPath: Set<string>): number => {
    const n = byId.get(id)!;
    const k = keyOf(n.callFrame);
    let hits = n.hitCount ?? 0;
    const added = !onPath.has(k);
    if (added) onPath.add(k);
    for (const c of n.children ?? []) hits += subtree(c, onPath);
    if (added) {
      onPath.delete(k);
      total.set(k, (total.get(k) ?? 0) + hits);
    }
    return hits;
  };
  if (root) subtree(root.id, new Set());
  const busyHits = totalHits - idleHits || 1;
  const line = (name: string): ProfileLine => {
    const s = self.get(name) ?? 0;
    const t = total.get(name) ?? 0;
    return { name, selfMs: s * msPerHit, totalMs: t * msPerHit, selfPct: (100 * s) / busyHits, totalPct: (100 * t) / busyHits };
  };
  const skip = new Set(['(root)', '(idle)', '(program)']);
  const bySelf = [...self.keys()].filter((k) => k !== '(root)' && k !== '(idle)').map(line).sort((a, b) => b.selfMs - a.selfMs).slice(0, top);
  const byTotal = [...total.keys()].filter((k) => !skip.has(k)).map(line).sort((a, b) => b.totalMs - a.totalMs).slice(0, top);
  const byModule = [...modules.entries()]
    .filter(([m]) => m !== '(root)' && m !== '(idle)')
    .map(([module, hits]) => ({ module, ms: hits * msPerHit, pct: (100 * hits) / busyHits }))
    .sort((a, b) => b.ms - a.ms)
    .slice(0, top);
  return { file, durationMs, busyMs: busyHits * msPerHit, bySelf, byTotal, byModule };
}

export function formatProfile(s: ProfileSummary): string {
  const out: string[] = [];
  out.push(`profile ${s.file}${/\/raw\//.test(s.file) ? ' (raw ws server)' : /\/wsfpm\//.test(s.file) ? ' (wsfpm daemon)' : ''}`);
  out.push(`  ${(s.durationMs / 1000).toFixed(1)} s recorded after start-up, ${(s.busyMs / 1000).toFixed(1)} s busy (not idle); percentages are of busy time`);
  out.push('  top self time:');
  for (const l of s.bySelf) out.push(`    ${l.selfPct.toFixed(1).padStart(5)}%  ${l.name}`);
  out.push('  top total (inclusive) time:');
  for (const l of s.byTotal) out.push(`    ${l.totalPct.toFixed(1).padStart(5)}%  ${l.name}`);
  out.push('  self time by module:');
  for (const m of s.byModule) out.push(`    ${m.pct.toFixed(1).padStart(5)}%  ${m.module}`);
  return out.join('\n');
}
