/**
 * Reading a process tree's memory from /proc, for the soak.
 *
 * PSS alone cannot say why a pool grows: a shared page newly faulted in
 * (opcache, a library) and a private heap page both raise it. The rollup's
 * split (private/shared, anon/file/shmem) and a per-mapping diff of a few
 * workers name the part that grows.
 */
import { readdir, readFile } from 'node:fs/promises';

export const ROLLUP_FIELDS = ['Rss', 'Pss', 'Pss_Anon', 'Pss_File', 'Pss_Shmem', 'Private_Dirty', 'Private_Clean', 'Shared_Dirty', 'Shared_Clean'] as const;
export type Rollup = Record<(typeof ROLLUP_FIELDS)[number], number>;

/** One process's /proc/PID/smaps_rollup, in KiB per field (zeros when it is gone). */
export async function rollup(pid: number): Promise<Rollup> {
  const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '');
  const out = {} as Rollup;
  for (const f of ROLLUP_FIELDS) out[f] = Number(new RegExp(`^${f}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
  return out;
}

/** The pids whose parent is `parent`. */
export async function children(parent: number): Promise<number[]> {
  const pids: number[] = [];
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const st = await readFile(`/proc/${p}/stat`, 'utf8').catch(() => '');
    const ppid = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
    if (ppid === parent) pids.push(Number(p));
  }
  return pids;
}

/**
 * Private_Dirty + Shared_Dirty + Rss per mapping name ("[heap]", a library's
 * path, "/dev/zero (deleted)" for opcache's shared memory, "[anon]" for the
 * rest), so two readings of one worker can be diffed.
 */
export async function mappings(pid: number): Promise<Map<string, { rss: number; privateDirty: number }>> {
  const text = await readFile(`/proc/${pid}/smaps`, 'utf8').catch(() => '');
  const out = new Map<string, { rss: number; privateDirty: number }>();
  let name = '[anon]';
  for (const line of text.split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      name = head[1] || '[anon]';
      if (!out.has(name)) out.set(name, { rss: 0, privateDirty: 0 });
      continue;
    }
    const field = /^(Rss|Private_Dirty):\s+(\d+) kB/.exec(line);
    if (!field) continue;
    const m = out.get(name)!;
    if (field[1] === 'Rss') m.rss += Number(field[2]);
    else m.privateDirty += Number(field[2]);
  }
  return out;
}

/** What grew between two readings of the same workers, largest first, in KiB summed over them. */
export function mappingGrowth(before: Map<string, { rss: number; privateDirty: number }>[], after: Map<string, { rss: number; privateDirty: number }>[]): { mapping: string; rssKiB: number; privateDirtyKiB: number }[] {
  const total = new Map<string, { rssKiB: number; privateDirtyKiB: number }>();
  for (let i = 0; i < Math.min(before.length, after.length); i++) {
    const a = before[i]!;
    const b = after[i]!;
    if (b.size === 0) continue; // the worker is gone
    for (const name of new Set([...a.keys(), ...b.keys()])) {
      const t = total.get(name) ?? { rssKiB: 0, privateDirtyKiB: 0 };
      t.rssKiB += (b.get(name)?.rss ?? 0) - (a.get(name)?.rss ?? 0);
      t.privateDirtyKiB += (b.get(name)?.privateDirty ?? 0) - (a.get(name)?.privateDirty ?? 0);
      total.set(name, t);
    }
  }
  return [...total].map(([mapping, t]) => ({ mapping, ...t }))
    .filter((g) => g.rssKiB !== 0 || g.privateDirtyKiB !== 0)
    .sort((x, y) => Math.abs(y.rssKiB) - Math.abs(x.rssKiB));
}
