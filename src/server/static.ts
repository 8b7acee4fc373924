/**
 * Which static file, if any, a page request names. Serving is left to
 * @fastify/static (content types, ranges, ETag/Last-Modified, 304); this
 * module decides what may be served at all:
 *
 * - only regular files whose real path (symlinks followed) stays below the
 *   root's real path;
 * - never a file or directory whose name starts with '.' (.env, .htaccess,
 *   .git/), in the URL or in the real path, except `.well-known`;
 * - never PHP source: `.php`, `.php3`…`.php8`, `.phtml`, `.phar`, `.phps`,
 *   `.inc`, also with a suffix after them (`x.php.bak`, `x.php~`), in either
 *   name.
 *
 * The caller passes a path that safeDecode (resolve.ts) has already checked:
 * percent-decoded, no `.`/`..` segments, no NUL or backslash.
 */
import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';

export type StaticMatch =
  /** A file to serve; `file` is relative to the real root and starts with '/'. */
  | { kind: 'file'; file: string }
  /** A directory named without its trailing slash that has an index: redirect to add it. */
  | { kind: 'slash' }
  /** A directory (with its slash) whose index is index.html, and no index.php. */
  | { kind: 'index'; file: string }
  | { kind: 'none' };

const PHP_SOURCE = /\.(?:php\d?|phtml|phar|phps|inc)(?:[.~]|$)/i;

/** Whether a name must never be sent as a static file. `.well-known` (RFC 8615: public by definition, ACME challenges) is the one dot name allowed. */
export function isForbiddenName(name: string): boolean {
  return (name.startsWith('.') && name !== '.well-known') || PHP_SOURCE.test(name);
}

function hasForbiddenSegment(p: string): boolean {
  return p.split('/').some((segment) => segment !== '' && isForbiddenName(segment));
}

export class StaticFiles {
  readonly #realRoot: Promise<string | null>;

  constructor(root: string) {
    this.#realRoot = realpath(root).catch(() => null);
  }

  /** The real document root (symlinks followed), or null when it does not exist. */
  realRoot(): Promise<string | null> {
    return this.#realRoot;
  }

  /** What `decoded` (a safeDecode'd URL path) names below the root. */
  async match(decoded: string): Promise<StaticMatch> {
    const root = await this.#realRoot;
    if (root === null || hasForbiddenSegment(decoded)) return { kind: 'none' };
    const found = await this.#inside(root, path.join(root, decoded));
    if (!found) return { kind: 'none' };
    if (found.isFile) {
      if (decoded.endsWith('/')) return { kind: 'none' };
      return { kind: 'file', file: found.relative };
    }
    // A directory: index.php wins (it is PHP's, the resolver finds it), then index.html.
    const hasPhpIndex = (await this.#inside(root, path.join(found.real, 'index.php'), true))?.isFile ?? false;
    const html = await this.#inside(root, path.join(found.real, 'index.html'));
    const hasHtmlIndex = html?.isFile ?? false;
    if (!decoded.endsWith('/')) return hasPhpIndex || hasHtmlIndex ? { kind: 'slash' } : { kind: 'none' };
    if (!hasPhpIndex && hasHtmlIndex) return { kind: 'index', file: html!.relative };
    return { kind: 'none' };
  }

  /** The real path of `candidate` if it exists below `root` with no forbidden name on the way (`php`: PHP names allowed, to look for index.php). */
  async #inside(root: string, candidate: string, php = false): Promise<{ real: string; relative: string; isFile: boolean } | null> {
    let real: string;
    let isFile: boolean;
    try {
      real = await realpath(candidate);
      const st = await stat(real);
      if (!st.isFile() && !st.isDirectory()) return null;
      isFile = st.isFile();
    } catch {
      return null;
    }
    if (real !== root && !real.startsWith(root.endsWith('/') ? root : root + '/')) return null;
    const relative = '/' + path.relative(root, real).split(path.sep).join('/');
    if (php ? relative.split('/').some((segment) => segment.startsWith('.') && segment !== '.well-known') : hasForbiddenSegment(relative)) return null;
    return { real, relative: relative === '/' ? '/' : relative, isFile };
  }
}
