/**
 * URL path → PHP script inside the document root, never outside it.
 *
 * Order: an explicit route for the exact path; the first path segment that
 * names a `.php` file (the rest is PATH_INFO, as Apache's AcceptPathInfo
 * does); a directory's index file; the front controller. The decoded path
 * may not hold `.` or `..` segments, NUL or backslashes, and the script's
 * real path (symlinks followed) must stay below the root's real path.
 */
import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';

const CACHE_MS = 1000;
const CACHE_ENTRIES = 10_000;

export interface ResolvedScript {
  documentRoot: string;
  filename: string;
  scriptName: string;
  pathInfo: string;
}

export interface ResolverOptions {
  root: string;
  /** Front controller, relative to root; '' for none. */
  index: string;
  /** URL path → script path relative to root. */
  routes: ReadonlyMap<string, string>;
}

export class Resolver {
  readonly #options: ResolverOptions;
  #realRoot: Promise<string>;

  constructor(options: ResolverOptions) {
    this.#options = options;
    this.#realRoot = realpath(options.root);
    this.#realRoot.catch(() => {});
  }

  /**
   * Answers are kept for CACHE_MS: a burst of connections to one script
   * costs one realpath and stat, and a new or removed file is seen within a
   * second.
   */
  readonly #cache = new Map<string, { at: number; value: Promise<ResolvedScript | null> }>();

  /** The script for `pathname` (undecoded), or null: the caller answers 404. */
  resolve(rawPathname: string): Promise<ResolvedScript | null> {
    const now = Date.now();
    const hit = this.#cache.get(rawPathname);
    if (hit && now - hit.at < CACHE_MS) return hit.value;
    if (this.#cache.size >= CACHE_ENTRIES) this.#cache.clear();
    const value = this.#resolve(rawPathname);
    this.#cache.set(rawPathname, { at: now, value });
    return value;
  }

  async #resolve(rawPathname: string): Promise<ResolvedScript | null> {
    const decoded = safeDecode(rawPathname);
    if (decoded === null) return null;
    const root = await this.#realRoot.catch(() => null);
    if (root === null) return null;
    const route = this.#options.routes.get(decoded);
    if (route !== undefined) return this.#script(root, '/' + route.replace(/^\/+/, ''), '');

    const segments = decoded.split('/').slice(1);
    let prefix = '';
    for (let i = 0; i < segments.length; i++) {
      prefix += '/' + segments[i];
      if (!segments[i]!.endsWith('.php')) continue;
      const rest = segments.slice(i + 1);
      const found = await this.#script(root, prefix, rest.length ? '/' + rest.join('/') : '');
      if (found) return found;
    }
    const dirIndex = (decoded.endsWith('/') ? decoded : decoded + '/') + 'index.php';
    const asDir = await this.#script(root, dirIndex, '');
    if (asDir) return asDir;
    if (this.#options.index) return this.#script(root, '/' + this.#options.index.replace(/^\/+/, ''), '');
    return null;
  }

  async #script(root: string, scriptName: string, pathInfo: string): Promise<ResolvedScript | null> {
    if (!scriptName.endsWith('.php')) return null;
    const candidate = path.join(root, scriptName);
    let real: string;
    try {
      real = await realpath(candidate);
      if (!(await stat(real)).isFile()) return null;
    } catch {
      return null;
    }
    if (!real.startsWith(root.endsWith('/') ? root : root + '/')) return null;
    return { documentRoot: root, filename: real, scriptName: scriptName.replace(/\/{2,}/g, '/'), pathInfo };
  }
}

/** Percent-decodes a path; null when it is malformed or tries to climb. */
export function safeDecode(rawPathname: string): string | null {
  if (!rawPathname.startsWith('/')) return null;
  let decoded: string;
  try {
    decoded = decodeURIComponent(rawPathname);
  } catch {
    return null;
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return null;
  for (const segment of decoded.split('/')) {
    if (segment === '.' || segment === '..') return null;
  }
  return decoded;
}
