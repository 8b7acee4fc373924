/**
 * Real Apache and nginx in front of wsfpm, as the tests' own processes: a
 * config of their own in a temp dir that includes the files of deploy/
 * unchanged, loopback ports picked at start, and a PHP site behind them on
 * php-fpm. Also the websocket pool of deploy/php-fpm/wsfpm-pool.conf, run
 * unchanged with only its system paths moved into the temp dir.
 *
 * Everything here is stopped by `stop()`, and killed if the test process
 * exits without calling it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { chmod, chown, copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FpmPool, findPhpFpm } from '../../src/fpm/pool.ts';
import { open, refusal, withTimeout } from './harness.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..');
/** Read by the servers' masters at start-up (as root when the tests are), so the checkout's own files do. */
export const DEPLOY = path.join(REPO, 'deploy');
/** The client's address: not the proxy's 127.0.0.1, so the tests can tell them apart. */
export const CLIENT_IP = '127.0.0.2';

const isRoot = process.getuid?.() === 0;
/** The site's user, as on Debian; only when the tests run as root. */
const WEB_USER = 'www-data';

/** The trees the servers' workers read at request time: the document roots and the PHP library their scripts require. */
const SERVED = ['test/fixtures/site', 'test/fixtures/front', 'php'];

/**
 * A copy of SERVED in a temp dir every user can enter, with the
 * repository's layout (so `require __DIR__ . '/../../../php/autoload.php'`
 * still resolves). The workers of Apache, nginx and the site's pool run as
 * www-data, which cannot enter a checkout below a 0700 or 0750 home
 * directory: given the checkout's own files they answered 403/404/500.
 * Copied once per test process, removed when it exits.
 */
function servedCopy(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wsfpm-served-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  for (const tree of SERVED) cpSync(path.join(REPO, tree), path.join(dir, tree), { recursive: true });
  // A clone made under umask 077 has 0600 files: the copy must not keep that.
  const readable = (d: string): void => {
    chmodSync(d, 0o755);
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) readable(path.join(d, e.name));
      else chmodSync(path.join(d, e.name), 0o644);
    }
  };
  readable(dir);
  return dir;
}

/** Where the servers find the test's PHP files: a readable copy of the checkout's, same layout. */
export const SERVED_TREE = servedCopy();
/** The PHP site behind the web servers; wsfpm's --root is this dir (or a copy of it). */
export const SITE = path.join(SERVED_TREE, 'test', 'fixtures', 'site');
/** The site wsfpm sits in front of (--upstream). */
export const FRONT = path.join(SERVED_TREE, 'test', 'fixtures', 'front');

/** A loopback port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(target: { port: number } | { path: string }): Promise<boolean> {
  return new Promise((resolve) => {
    const s = 'port' in target ? net.connect({ host: '127.0.0.1', port: target.port }) : net.connect({ path: target.path });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** A server process in its own process group, so stopping it reaches its children too. */
class Proc {
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  output = '';
  #guard = (): void => this.#killGroup('SIGKILL');

  constructor(readonly name: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env) {
    this.child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env });
    const keep = (c: Buffer): void => {
      this.output = (this.output + c.toString()).slice(-20_000);
      if (process.env.WSFPM_TEST_DEBUG) process.stderr.write(`[${name}] ${c.toString()}`);
    };
    this.child.stdout!.on('data', keep);
    this.child.stderr!.on('data', keep);
    process.once('exit', this.#guard);
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    this.child.once('error', (err) => {
      this.output += String(err);
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  #killGroup(signal: NodeJS.Signals): void {
    if (this.child.pid === undefined) return;
    try {
      process.kill(-this.child.pid, signal);
    } catch {
      // Already gone.
    }
  }

  /** SIGTERM, then SIGKILL to the whole group after `graceMs`; always reaps leftovers of the group. */
  async stop(graceMs = 3000): Promise<void> {
    if (this.running) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.#killGroup('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    this.#killGroup('SIGKILL');
    process.removeListener('exit', this.#guard);
  }
}

async function tail(file: string, lines = 30): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** Waits until every target accepts connections; fails early if the process died. */
async function waitListening(proc: Proc, targets: Array<{ port: number } | { path: string }>, log: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (!proc.running) throw new Error(`${proc.name} exited during start-up:\n${proc.output}\n${await tail(log)}`);
    const ok = await Promise.all(targets.map((t) => ('path' in t && !existsSync(t.path) ? false : canConnect(t))));
    if (ok.every(Boolean)) return;
    if (Date.now() > deadline) {
      await proc.stop();
      throw new Error(`${proc.name} did not listen within ${ms} ms:\n${proc.output}\n${await tail(log)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A temp dir the web server's workers (www-data) can enter. */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  await chmod(dir, 0o755);
  return dir;
}

async function userIds(name: string): Promise<{ uid: number; gid: number } | null> {
  const passwd = await readFile('/etc/passwd', 'utf8').catch(() => '');
  const line = passwd.split('\n').find((l) => l.startsWith(`${name}:`));
  if (!line) return null;
  const f = line.split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

/** The name of a group id, from /etc/group. */
async function groupName(gid: number): Promise<string | null> {
  const groups = await readFile('/etc/group', 'utf8').catch(() => '');
  return groups.split('\n').map((l) => l.split(':')).find((f) => Number(f[2]) === gid)?.[0] ?? null;
}

/** Gives a dir to the site's user (when running as root), as a real site's session dir would be. */
async function giveToWebUser(dir: string): Promise<void> {
  const ids = isRoot ? await userIds(WEB_USER) : null;
  if (ids) await chown(dir, ids.uid, ids.gid);
}

// ---------------------------------------------------------------- php-fpm

/**
 * The site's own php-fpm pool (the one pages run in), its workers as the
 * site's user, and a socket the web server's workers may connect to.
 */
export async function startSitePool(maxChildren = 4): Promise<FpmPool> {
  const pool = await FpmPool.start({ maxChildren, privateSessions: true, ...(isRoot ? { user: WEB_USER } : {}) });
  await chmod(pool.dir, 0o711);
  await chmod(pool.socket, 0o666);
  await giveToWebUser(pool.sessionDir);
  await giveToWebUser(pool.spoolDir);
  return pool;
}

export interface DeployPool {
  socket: string;
  statusSocket: string;
  /** The test's stand-in for /var/lib/wsfpm/spool. */
  spool: string;
  stop(): Promise<void>;
}

/**
 * deploy/php-fpm/wsfpm-pool.conf, included unchanged. Only what names this
 * machine's paths is moved into the temp dir, and the worker count is
 * lowered: php_admin_value lines placed BEFORE the include win (php-fpm
 * applies the first of a repeated php_admin_value), pool lines placed after
 * it win (a later [wsfpm] section reopens the same pool).
 */
export async function startDeployPool(dir: string, opts: { maxChildren: number; sessionDir: string }): Promise<DeployPool> {
  const binary = await findPhpFpm();
  if (!binary) throw new Error('php-fpm not found: apt-get install php-fpm');
  await mkdir(dir, { recursive: true });
  await chmod(dir, 0o755);
  const spool = path.join(dir, 'spool');
  await mkdir(spool, { recursive: true });
  await giveToWebUser(spool);
  const socket = path.join(dir, 'wsfpm.sock');
  const statusSocket = path.join(dir, 'wsfpm-status.sock');
  const log = path.join(dir, 'php-fpm.log');
  const conf = path.join(dir, 'php-fpm.conf');
  await writeFile(conf, [
    '[global]',
    `pid = ${path.join(dir, 'php-fpm.pid')}`,
    `error_log = ${log}`,
    'daemonize = no',
    '',
    '[wsfpm]',
    `php_admin_value[upload_tmp_dir] = ${spool}`,
    `php_admin_value[session.save_path] = ${opts.sessionDir}`,
    '',
    `include = ${path.join(DEPLOY, 'php-fpm', 'wsfpm-pool.conf')}`,
    '',
    '[wsfpm]',
    `listen = ${socket}`,
    `pm.status_listen = ${statusSocket}`,
    `pm.max_children = ${opts.maxChildren}`,
    // Not root: php-fpm cannot hand the socket to www-data; it stays the developer's.
    ...(isRoot ? [] : [`listen.owner = ${os.userInfo().username}`, `listen.group = ${(await groupName(os.userInfo().gid)) ?? os.userInfo().username}`]),
    '',
  ].join('\n'));
  const proc = new Proc('php-fpm (wsfpm-pool.conf)', binary, ['-y', conf, '-F']);
  await waitListening(proc, [{ path: socket }, { path: statusSocket }], log, 15_000);
  return { socket, statusSocket, spool, stop: () => proc.stop() };
}

// ---------------------------------------------------------------- sites

/**
 * A copy of the site with `htaccess` as its .htaccess (byte for byte): one
 * directory holds one .htaccess, and each form needs its own. The copy keeps
 * the repository's layout (DIR/test/fixtures/site, DIR/php → the real php/),
 * so the scripts' `require __DIR__ . '/../../../php/autoload.php'` still
 * works. Returns the copy's document root.
 */
export async function siteWithHtaccess(parent: string, name: string, htaccess: string): Promise<string> {
  const top = path.join(parent, name);
  const root = path.join(top, 'test', 'fixtures', 'site');
  await mkdir(root, { recursive: true });
  for (const d of [top, path.join(top, 'test'), path.join(top, 'test', 'fixtures'), root]) await chmod(d, 0o755);
  await symlink(path.join(SERVED_TREE, 'php'), path.join(top, 'php'));
  for (const f of await readdir(SITE)) await copyFile(path.join(SITE, f), path.join(root, f));
  await copyFile(htaccess, path.join(root, '.htaccess'));
  return root;
}

// ---------------------------------------------------------------- Apache

export interface ApacheVhost {
  docroot: string;
  /** php-fpm socket of the site's pages. */
  fpmSocket: string;
  /** `Define WSFPM_BACKEND` before this vhost (host:port of wsfpm). */
  backend?: string;
  /** A file of deploy/ included unchanged inside the vhost. */
  include?: string;
  /** For the document root; .htaccess forms need FileInfo. */
  allowOverride?: string;
}

export interface WebServer {
  /** The port of each vhost / server block, in the order given. */
  ports: number[];
  dir: string;
  errorLog(): Promise<string>;
  stop(): Promise<void>;
}

const MODULES = '/usr/lib/apache2/modules';

/**
 * Apache (Debian's apache2 binary, mpm_event) with the modules the deploy
 * files name: rewrite, proxy, proxy_http, headers; proxy_fcgi for the site;
 * `modules` adds others (behind-wsfpm.conf: remoteip, setenvif).
 * `timeout` (seconds) is both Timeout and ProxyTimeout: the idle limit of a
 * proxied websocket.
 */
export async function startApache(opts: { vhosts: ApacheVhost[]; timeout: number; logLevel?: string; modules?: string[] }): Promise<WebServer> {
  const apache = ['/usr/sbin/apache2', '/usr/sbin/httpd'].find((p) => existsSync(p));
  if (!apache) throw new Error('apache2 not found: apt-get install apache2');
  const dir = await tempDir('wsfpm-apache-');
  const log = path.join(dir, 'error.log');
  // Debian's apache2 wants these only when a config names them; ours names none, but keep them sane.
  const env = { ...process.env, APACHE_RUN_DIR: dir, APACHE_LOCK_DIR: dir, APACHE_LOG_DIR: dir, APACHE_PID_FILE: path.join(dir, 'httpd.pid') };
  return startOnFreePorts(dir, log, opts.vhosts.length, async (ports) => {
    const conf = path.join(dir, 'httpd.conf');
    await writeFile(conf, apacheConf(dir, ports, opts));
    return new Proc('apache2', apache, ['-f', conf, '-DFOREGROUND'], env);
  });
}

function apacheConf(dir: string, ports: number[], opts: { vhosts: ApacheVhost[]; timeout: number; logLevel?: string; modules?: string[] }): string {
  const mods = ['mpm_event', 'authz_core', 'dir', 'rewrite', 'headers', 'proxy', 'proxy_http', 'proxy_fcgi', ...(opts.modules ?? [])];
  const lines = [
    `ServerRoot ${dir}`,
    `DefaultRuntimeDir ${dir}`,
    `PidFile ${path.join(dir, 'httpd.pid')}`,
    `ErrorLog ${path.join(dir, 'error.log')}`,
    `LogLevel ${opts.logLevel ?? 'warn'}`,
    `Mutex file:${dir} default`,
    'ServerName 127.0.0.1',
    ...(isRoot ? [`User ${WEB_USER}`, `Group ${WEB_USER}`] : []),
    ...mods.map((m) => `LoadModule ${m}_module ${MODULES}/mod_${m}.so`),
    'StartServers 1',
    'ServerLimit 2',
    'ThreadsPerChild 25',
    'MinSpareThreads 5',
    'MaxSpareThreads 50',
    'MaxRequestWorkers 50',
    // The idle limit of a proxied websocket is max(Timeout, ProxyTimeout).
    `Timeout ${opts.timeout}`,
    `ProxyTimeout ${opts.timeout}`,
    '<Directory />',
    '    AllowOverride None',
    '    Require all denied',
    '</Directory>',
  ];
  opts.vhosts.forEach((v, i) => {
    lines.push(
      '',
      `Listen 127.0.0.1:${ports[i]}`,
      ...(v.backend ? [`Define WSFPM_BACKEND ${v.backend}`] : []),
      `<VirtualHost 127.0.0.1:${ports[i]}>`,
      `    DocumentRoot ${v.docroot}`,
      `    <Directory ${v.docroot}>`,
      `        AllowOverride ${v.allowOverride ?? 'None'}`,
      '        Options SymLinksIfOwnerMatch',
      '        Require all granted',
      '    </Directory>',
      '    DirectoryIndex index.php',
      // As Debian's php8.2-fpm.conf does it.
      '    <FilesMatch ".+\\.php$">',
      `        SetHandler "proxy:unix:${v.fpmSocket}|fcgi://localhost"`,
      '    </FilesMatch>',
      ...(v.include ? [`    Include ${v.include}`] : []),
      '</VirtualHost>',
    );
  });
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------- nginx

export interface NginxServer {
  root: string;
  fpmSocket: string;
  /** Files of deploy/ included unchanged inside server{}. */
  include: string[];
  /** Files included unchanged in the PHP location, after fastcgi_params. */
  phpInclude?: string[];
}

/**
 * nginx with its own prefix and temp paths. http{} includes the upstream file
 * given (the test's own, pointing at its wsfpm) and deploy/nginx/wsfpm.conf;
 * each server{} its deploy files and the site's PHP location. `readTimeout`
 * is the server's proxy_read_timeout: the idle limit of a websocket.
 */
export async function startNginx(opts: { upstreamFile: string; servers: NginxServer[]; readTimeout: string; httpIncludes?: string[] }): Promise<WebServer> {
  const nginx = ['/usr/sbin/nginx', '/usr/local/sbin/nginx'].find((p) => existsSync(p));
  if (!nginx) throw new Error('nginx not found: apt-get install nginx');
  const dir = await tempDir('wsfpm-nginx-');
  const log = path.join(dir, 'error.log');
  return startOnFreePorts(dir, log, opts.servers.length, async (ports) => {
    const conf = path.join(dir, 'nginx.conf');
    await writeFile(conf, nginxConf(dir, ports, opts));
    return new Proc('nginx', nginx, ['-p', dir, '-c', conf, '-e', log, '-g', 'daemon off;']);
  });
}

/**
 * Starts a server on `count` free ports, again on other ports (3 tries) when
 * another process took one between freePort() and the server's listen. The
 * server owns `dir`; stop() removes it.
 */
async function startOnFreePorts(dir: string, log: string, count: number, start: (ports: number[]) => Promise<Proc>): Promise<WebServer> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const ports = await Promise.all(Array.from({ length: count }, () => freePort()));
    const proc = await start(ports);
    try {
      await waitListening(proc, ports.map((port) => ({ port })), log);
      return { ports, dir, errorLog: () => readFile(log, 'utf8').catch(() => ''), stop: async () => {
        await proc.stop();
        await rm(dir, { recursive: true, force: true });
      } };
    } catch (err) {
      lastError = err;
      await proc.stop();
      if (!/Address already in use/.test(String(err))) break;
    }
  }
  await rm(dir, { recursive: true, force: true });
  throw lastError;
}

function nginxConf(dir: string, ports: number[], opts: { upstreamFile: string; servers: NginxServer[]; readTimeout: string; httpIncludes?: string[] }): string {
  const lines = [
    'worker_processes 1;',
    `pid ${path.join(dir, 'nginx.pid')};`,
    `error_log ${path.join(dir, 'error.log')} warn;`,
    ...(isRoot ? [`user ${WEB_USER} ${WEB_USER};`] : []),
    'events { worker_connections 256; }',
    'http {',
    '    access_log off;',
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `    ${t}_temp_path ${path.join(dir, t)};`),
    `    include ${opts.upstreamFile};`,
    `    include ${path.join(DEPLOY, 'nginx', 'wsfpm.conf')};`,
    ...(opts.httpIncludes ?? []).map((f) => `    include ${f};`),
  ];
  opts.servers.forEach((s, i) => {
    lines.push(
      '    server {',
      `        listen 127.0.0.1:${ports[i]};`,
      '        server_name 127.0.0.1;',
      `        root ${s.root};`,
      '        index index.php;',
      // The idle limit of a proxied websocket; the deploy files inherit it.
      `        proxy_read_timeout ${opts.readTimeout};`,
      ...s.include.map((f) => `        include ${f};`),
      '        location ~ \\.php$ {',
      '            include /etc/nginx/fastcgi_params;',
      '            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;',
      ...(s.phpInclude ?? []).map((f) => `            include ${f};`),
      `            fastcgi_pass unix:${s.fpmSocket};`,
      '        }',
      '    }',
    );
  });
  lines.push('}');
  return lines.join('\n') + '\n';
}

/** `nginx -t` of a config that includes `files` in http{}: syntax checks of files a test does not run. */
export async function nginxSyntax(files: string[]): Promise<{ ok: boolean; output: string }> {
  const dir = await tempDir('wsfpm-nginx-t-');
  try {
    const conf = path.join(dir, 'nginx.conf');
    await writeFile(conf, [
      `pid ${path.join(dir, 'nginx.pid')};`,
      'events {}',
      'http {',
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `    ${t}_temp_path ${path.join(dir, t)};`),
      ...files.map((f) => `    include ${f};`),
      '}',
      '',
    ].join('\n'));
    const proc = new Proc('nginx -t', ['/usr/sbin/nginx', '/usr/local/sbin/nginx'].find((p) => existsSync(p)) ?? 'nginx', ['-t', '-p', dir, '-c', conf, '-e', path.join(dir, 'error.log')]);
    await proc.exited;
    return { ok: proc.child.exitCode === 0, output: proc.output };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- clients

export interface PageResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A plain GET from the client's address (CLIENT_IP). */
export function getPage(port: number, pathAndQuery: string, headers: Record<string, string> = {}): Promise<PageResponse> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: pathAndQuery, headers, localAddress: CLIENT_IP, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`GET ${pathAndQuery} timed out`)));
  });
}

/** `PHPSESSID=…` from a response's Set-Cookie. */
export function sessionCookie(res: PageResponse): string {
  const set = ([] as string[]).concat(res.headers['set-cookie'] ?? []);
  const cookie = set.map((c) => c.split(';')[0]!).find((c) => c.startsWith('PHPSESSID='));
  if (!cookie) throw new Error(`no PHPSESSID cookie in ${JSON.stringify(res.headers)}`);
  return cookie;
}

// ---------------------------------------------------------------- what each form must prove

export interface ProxyForm {
  name: string;
  /** Websockets under /ws/ with the prefix stripped; otherwise on the page's own URL. */
  prefix: boolean;
  /** Document root of the web server and wsfpm's --root. */
  root: string;
  /** Web server port whose wsfpm pings every second and trusts the proxy (the deploy setup). */
  port: number;
  /** Web server port, same deploy file, whose wsfpm neither pings nor trusts any proxy. */
  untunedPort: number;
  /** The web server's idle limit for a proxied websocket, ms. */
  idleLimitMs: number;
  /** How long the idle tests stay silent: past the idle limit. */
  idleMs: number;
  /** What a plain GET of /ws/chat.php gets in a prefix form (the site's 404, or wsfpm's 426). */
  plainGetOfPrefix?: number;
  /** Without a trusted proxy, is the site's own Origin refused (the proxy's Host is wsfpm's address)? */
  untunedRefusesOrigin: boolean;
}

/**
 * The proofs for one deploy form, against real servers the test file started
 * (the form's fields are filled in by its before()):
 * (1) a plain page still reaches PHP; (2) a websocket on the same port
 * reaches the PHP script through wsfpm; (3) the session a page started is the
 * one the websocket script reads; (4) an idle websocket outlives the proxy's
 * idle limit thanks to wsfpm's pings, and without pings it is cut; (5) PHP
 * sees the client's address, the site's host and scheme, and the Origin
 * check passes for the site's own origin only.
 */
export function describeProxyForm(form: ProxyForm): void {
  const wsPath = (p: string): string => (form.prefix ? `/ws${p}` : p);
  const url = (port: number, p: string): string => `ws://127.0.0.1:${port}${wsPath(p)}`;
  const fromClient = (o: Record<string, unknown> = {}): Record<string, unknown> => ({ localAddress: CLIENT_IP, ...o });
  const json = (text: string): Record<string, unknown> => JSON.parse(text) as Record<string, unknown>;
  const login = async (name: string): Promise<{ cookie: string; session: string }> => {
    const page = await getPage(form.port, `/chat.php?name=${name}`);
    assert.equal(page.status, 200, page.body);
    const cookie = sessionCookie(page);
    return { cookie, session: cookie.split('=')[1]! };
  };

  describe(form.name, () => {
    it('(1) a plain page request still reaches PHP', async () => {
      const page = await getPage(form.port, '/chat.php?name=alice');
      assert.equal(page.status, 200, page.body);
      const seen = json(page.body);
      assert.equal(seen.websocket, false);
      assert.equal(seen.name, 'alice');
      assert.equal(seen.SCRIPT_FILENAME, path.join(form.root, 'chat.php'));
      assert.equal(seen.REMOTE_ADDR, CLIENT_IP);
      const index = await getPage(form.port, '/');
      assert.equal(index.status, 200);
      assert.equal(index.body, 'index page');
      // Pages are left alone: a client's X-Forwarded-Proto reaches the page as it was sent.
      const other = await getPage(form.port, '/chat.php', { 'X-Forwarded-Proto': 'https' });
      assert.equal(json(other.body).HTTP_X_FORWARDED_PROTO, 'https');
      if (form.prefix) assert.equal((await getPage(form.port, '/ws/chat.php')).status, form.plainGetOfPrefix);
    });

    it('(2) a websocket on the same port reaches the PHP script through wsfpm', async () => {
      const c = await open(url(form.port, '/echo.php'), fromClient());
      c.ws.send('hello through the proxy');
      assert.equal(await c.text(), 'hello through the proxy');
      const bin = Buffer.from([0, 1, 2, 255]);
      c.ws.send(bin, { binary: true });
      const back = await c.next();
      assert.equal(back.binary, true);
      assert.ok(back.data.equals(bin));
      c.ws.close(1000);
      assert.equal((await c.closed).code, 1000);
      // "/" reaches wsfpm's front controller, with the query string.
      const index = await open(url(form.port, '/?room=2'), fromClient());
      assert.equal(await index.text(), 'index websocket /?room=2');
      index.ws.close(1000);
      await index.closed;
    });

    it('(3) the PHP session a page started is the one the websocket script reads', async () => {
      const { cookie, session } = await login('alice');
      const denied = await refusal(url(form.port, '/chat.php'), fromClient());
      assert.equal(denied.status, 401);
      assert.equal(denied.body, 'no session');
      const c = await open(url(form.port, '/chat.php?room=1'), fromClient({ headers: { Cookie: cookie } }));
      const seen = json(await c.text());
      assert.equal(seen.websocket, true);
      assert.equal(seen.session, session);
      assert.equal(seen.name, 'alice');
      assert.equal(seen.REQUEST_URI, '/chat.php?room=1', 'the prefix is stripped and the query kept');
      assert.equal(seen.QUERY_STRING, 'room=1');
      assert.equal(seen.SCRIPT_FILENAME, path.join(form.root, 'chat.php'));
      c.ws.send('hi');
      assert.equal(await c.text(), 'alice: hi');
      // The websocket holds no session lock: a page of the same session still answers.
      const page = await withTimeout(getPage(form.port, '/chat.php', { Cookie: cookie }), 3000, 'a page of the session while its websocket is open');
      assert.equal(json(page.body).session, session);
      c.ws.close(1000);
      await c.closed;
    });

    it('(4) an idle websocket outlives the proxy timeout thanks to wsfpm pings; without pings the proxy cuts it', async () => {
      const t0 = Date.now();
      const kept = await open(url(form.port, '/echo.php'), fromClient());
      const control = await open(url(form.untunedPort, '/echo.php'), fromClient());
      let pings = 0;
      kept.ws.on('ping', () => pings++);
      const cut = control.closed.then((r) => ({ ...r, after: Date.now() - t0 }));
      await new Promise((r) => setTimeout(r, form.idleMs));
      const controlEnd = await Promise.race([cut, Promise.resolve(null)]);
      assert.ok(controlEnd, `without pings the proxy should have cut the idle websocket within ${form.idleMs} ms`);
      assert.equal(controlEnd.code, 1006, 'cut without a close frame');
      assert.ok(controlEnd.after >= form.idleLimitMs - 500, `cut after ${controlEnd.after} ms, before the idle limit of ${form.idleLimitMs} ms`);
      assert.equal(kept.ws.readyState, 1, 'the pinged websocket is still open');
      assert.ok(pings >= 2, `wsfpm pinged ${pings} times`);
      kept.ws.send('still here');
      assert.equal(await kept.text(), 'still here');
      kept.ws.close(1000);
      await kept.closed;
    });

    it('(5) PHP sees the client\'s address, the site\'s host and scheme; the Origin check passes for the site\'s own origin only', async () => {
      const { cookie } = await login('bob');
      const site = `http://127.0.0.1:${form.port}`;
      // Forged forwarding headers from the client change nothing.
      const forged = { Cookie: cookie, 'X-Forwarded-For': '6.6.6.6', 'X-Forwarded-Host': 'evil.example', 'X-Forwarded-Proto': 'https' };
      const c = await open(url(form.port, '/chat.php'), fromClient({ origin: site, headers: forged }));
      const seen = json(await c.text());
      assert.equal(seen.REMOTE_ADDR, CLIENT_IP, 'X-Forwarded-For from the trusted proxy names the client');
      assert.equal(seen.HTTP_HOST, `127.0.0.1:${form.port}`, 'the Host the browser used, not wsfpm\'s address');
      assert.equal(seen.SERVER_PORT, String(form.port));
      assert.equal(seen.HTTPS, null, 'plain http: no HTTPS, whatever the client claimed');
      assert.equal(seen.REQUEST_SCHEME, 'http');
      c.ws.close(1000);
      await c.closed;
      const cross = await refusal(url(form.port, '/chat.php'), fromClient({ origin: 'http://evil.example', headers: { Cookie: cookie } }));
      assert.equal(cross.status, 403, 'a cross-site Origin is refused');

      // The control: a wsfpm that trusts no proxy sees the proxy, not the client.
      const plain = await open(url(form.untunedPort, '/chat.php'), fromClient({ headers: { Cookie: cookie } }));
      assert.equal(json(await plain.text()).REMOTE_ADDR, '127.0.0.1');
      plain.ws.close(1000);
      await plain.closed;
      const untunedSite = `http://127.0.0.1:${form.untunedPort}`;
      if (form.untunedRefusesOrigin) {
        const r = await refusal(url(form.untunedPort, '/chat.php'), fromClient({ origin: untunedSite, headers: { Cookie: cookie } }));
        assert.equal(r.status, 403, 'without the trusted proxy the site\'s own Origin does not match wsfpm\'s Host');
      }
    });
  });
}

// ---------------------------------------------------------------- docs

/**
 * Lines of docs/deploy.md's ```LANG blocks that are in none of `files`, as a
 * line of its own or as one in a comment (the env file example lives in the
 * unit's comments). Empty when the docs quote the deploy files faithfully.
 */
export async function unquotedDocLines(lang: string, files: string[]): Promise<string[]> {
  const doc = await readFile(path.join(REPO, 'docs', 'deploy.md'), 'utf8');
  const known = new Set<string>();
  for (const f of files) {
    for (const line of (await readFile(f, 'utf8')).split('\n')) {
      known.add(line.trim());
      known.add(line.trim().replace(/^[#;]\s*/, ''));
    }
  }
  const missing: string[] = [];
  const block = new RegExp('^\\s*```' + lang + '\\n([\\s\\S]*?)^\\s*```', 'gm');
  for (const m of doc.matchAll(block)) {
    for (const line of m[1]!.split('\n').map((l) => l.trim()).filter(Boolean)) {
      if (!known.has(line)) missing.push(line);
    }
  }
  return missing;
}

/** How many ```LANG blocks docs/deploy.md has (so an empty check cannot pass by finding none). */
export async function docBlockCount(lang: string): Promise<number> {
  const doc = await readFile(path.join(REPO, 'docs', 'deploy.md'), 'utf8');
  return doc.split('\n').filter((l) => l.trim() === '```' + lang).length;
}
