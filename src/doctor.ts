/**
 * `wsfpm doctor URL`: checks a deployment from the outside, through the
 * site's real front URL, and says what to change for each problem. It asks
 * the daemon's diagnostic endpoint (`…/.wsfpm-doctor`, next to the script)
 * what it saw, then opens a real websocket to the script, and optionally
 * measures how long the proxy lets an idle websocket live. With the
 * daemon's doctor token (`--token`, or WSFPM_DOCTOR_TOKEN) the endpoint also
 * tells the version, the --trust-proxy list, the ping interval and the
 * proxy's address; without it the advice names what to look up instead.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import WebSocket from 'ws';
import { DOCTOR_FORMAT, DOCTOR_SUFFIX, DOCTOR_TOKEN_HEADER, type DoctorReport } from './server/diagnose.ts';

export type Verdict = 'ok' | 'warn' | 'fail';
export interface Finding {
  verdict: Verdict;
  text: string;
}

export interface DoctorOptions {
  /** Seconds to hold an idle websocket open to see whether the proxy cuts it; 0 skips. */
  idleCheck: number;
  timeoutMs?: number;
  /** The daemon's --doctor-token; sent to the diagnostic endpoint only, never to the script. */
  token?: string;
}

interface RawAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** Explanations for answers that did not come from wsfpm, per status. */
function proxyProblem(status: number, server: string | string[] | undefined): string {
  const apache = /apache/i.test(String(server ?? ''));
  switch (status) {
    case 200:
      return 'the upgrade was answered as a plain page: the proxy did not pass it to wsfpm as a websocket. Apache: the RewriteRule target must be ws://127.0.0.1:PORT (an http:// target needs ProxyPass … upgrade=websocket) and mod_proxy_wstunnel or mod_proxy_http must be loaded (a2enmod proxy proxy_http proxy_wstunnel). Nginx: proxy_http_version 1.1 and proxy_set_header Upgrade/Connection as in deploy/nginx/wsfpm.conf';
    case 403:
      return apache
        ? 'Apache refused the proxy request: mod_proxy is not loaded (a2enmod proxy proxy_http; error log AH10160), or the directory lacks Options FollowSymLinks / SymLinksIfOwnerMatch (AH00670)'
        : 'the proxy refused the request (403)';
    case 404:
      return apache
        ? 'the rewrite rule did not match: enable mod_rewrite (a2enmod rewrite) and allow .htaccess rules with AllowOverride FileInfo for this directory'
        : 'the proxy has no websocket location for this path: see deploy/nginx/wsfpm.conf';
    case 500:
      return apache
        ? 'Apache could not use the .htaccess: a directive not allowed there (ProxyPass, ProxyTimeout, ProxyPreserveHost), or AllowOverride without FileInfo; see the Apache error log'
        : 'the proxy answered 500';
    case 502:
    case 503:
    case 504:
      return `the proxy could not reach wsfpm (${status}): is wsfpm running, and on the address and port the proxy rule names?`;
    default:
      return `unexpected answer ${status} that did not come from wsfpm`;
  }
}

/** wsfpm's own refusal codes, in words, with what to change. */
const DAEMON_PROBLEMS: Record<string, string> = {
  WSFPM_ERR_NOT_FOUND: 'wsfpm found no PHP script for this path: its --root must be the site\'s document root (the same path the page is under), or add --routes',
  WSFPM_ERR_ORIGIN: 'wsfpm refused the site\'s own Origin: the proxy must send X-Forwarded-Host and its address must be in --trust-proxy, or list the origin in --allow-origins',
  WSFPM_ERR_FPM_UNREACHABLE: 'wsfpm cannot reach php-fpm: check --fpm (unix:/run/php/phpX.Y-fpm.sock or tcp:HOST:PORT) and that php-fpm runs',
  WSFPM_ERR_FPM_BUSY: 'php-fpm did not answer in time: the pool is saturated (raise pm.max_children, use pm = static) or the script is slow to call accept()',
  WSFPM_ERR_POOL_FULL: 'every php-fpm worker is busy: raise pm.max_children (each open websocket holds one worker)',
  WSFPM_ERR_TOO_MANY: 'wsfpm reached --max-connections',
  WSFPM_ERR_BAD_HANDSHAKE: 'the proxy changed the websocket handshake headers on the way',
};

function toHttpUrl(u: URL): URL {
  const out = new URL(u.href);
  if (out.protocol === 'ws:') out.protocol = 'http:';
  if (out.protocol === 'wss:') out.protocol = 'https:';
  return out;
}

function upgradeRequest(url: URL, origin: string, timeoutMs: number, extra: Record<string, string> = {}): Promise<RawAnswer | { error: string }> {
  return new Promise((resolve) => {
    const mod = url.protocol === 'https:' ? https : http;
    const req = mod.request(url, {
      method: 'GET',
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
        'Sec-WebSocket-Version': '13',
        Origin: origin,
        ...extra,
      },
      timeout: timeoutMs,
      // A fresh connection each time: an upgrade request's connection is not reusable.
      agent: false,
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 101, headers: res.headers, body: '' });
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < 64 * 1024) body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', (e) => resolve({ error: e.message }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code === 'ECONNREFUSED' ? `nothing listens at ${url.host} (ECONNREFUSED)` : e.message }));
    req.end();
  });
}

export async function runDoctor(target: string, options: DoctorOptions): Promise<Finding[]> {
  const findings: Finding[] = [];
  const say = (verdict: Verdict, text: string): void => void findings.push({ verdict, text });
  const timeoutMs = options.timeoutMs ?? 10_000;
  let url: URL;
  try {
    url = toHttpUrl(new URL(target));
  } catch {
    say('fail', `${target} is not a URL; give the websocket's public URL, e.g. https://example.com/ws/chat.php`);
    return findings;
  }
  const origin = url.origin;
  const probe = new URL(url.href);
  probe.pathname = probe.pathname.replace(/[^/]*$/, '') + DOCTOR_SUFFIX.slice(1);
  probe.search = '';

  // 1. Does an upgrade reach wsfpm, and what does wsfpm see?
  const diag = await upgradeRequest(probe, origin, timeoutMs, options.token ? { [DOCTOR_TOKEN_HEADER]: options.token } : {});
  if ('error' in diag) {
    say('fail', `cannot reach ${probe.origin}: ${diag.error}`);
    return findings;
  }
  let report: DoctorReport | null = null;
  try {
    const parsed = JSON.parse(diag.body) as DoctorReport;
    if (diag.status === 200 && parsed.doctor === DOCTOR_FORMAT) report = parsed;
  } catch {
    // Not wsfpm's report.
  }
  if (!report) {
    if (diag.headers['x-wsfpm-error'] === 'WSFPM_ERR_NOT_UPGRADE') {
      say('fail', 'the request reached wsfpm without its Upgrade header: the proxy dropped the upgrade. Apache: the RewriteRule target must be ws://127.0.0.1:PORT (an http:// target works only with ProxyPass … upgrade=websocket). Nginx: proxy_http_version 1.1 and proxy_set_header Upgrade $http_upgrade / Connection $connection_upgrade');
    } else {
      say('fail', `the upgrade did not reach wsfpm: ${proxyProblem(diag.status, diag.headers.server)}`);
    }
    return findings;
  }
  const daemon = report.daemon;
  say('ok', daemon ? `the upgrade reaches wsfpm ${daemon.version} (proxy at ${daemon.peer})` : 'the upgrade reaches wsfpm');
  if (options.token && !daemon) say('warn', 'the daemon did not take the doctor token: it is not its --doctor-token (WSFPM_DOCTOR_TOKEN), or it has none');

  const wantHttps = url.protocol === 'https:';
  const proxied = report.forwarded.for !== null || report.forwarded.host !== null;
  if (proxied && !report.peerTrusted) {
    say('fail', daemon
      ? `the proxy at ${daemon.peer} sends X-Forwarded-* but is not trusted, so PHP sees the proxy's address: add it to --trust-proxy (now "${daemon.trustProxy}")`
      : 'the proxy sends X-Forwarded-* but is not trusted, so PHP sees the proxy\'s address: add the address wsfpm sees it from to --trust-proxy (with --token the doctor names both)');
  } else if (proxied) {
    say('ok', `forwarded headers${daemon ? ` from ${daemon.peer}` : ''} are trusted: PHP sees REMOTE_ADDR ${report.client.address}`);
  }
  if (report.client.host.toLowerCase() !== url.host.toLowerCase()) {
    say('fail', `PHP sees Host "${report.client.host}" instead of "${url.host}": the proxy must send X-Forwarded-Host (Apache does; Nginx: proxy_set_header X-Forwarded-Host $http_host) from a trusted address`);
  } else {
    say('ok', `PHP sees the site's host ${report.client.host}`);
  }
  if (report.client.https !== wantHttps) {
    say('fail', `PHP sees HTTPS ${report.client.https ? 'on' : 'off'} but the site is ${url.protocol.slice(0, -1)}: the proxy must send X-Forwarded-Proto (Apache: RequestHeader set X-Forwarded-Proto expr=%{REQUEST_SCHEME}; Nginx: proxy_set_header X-Forwarded-Proto $scheme)`);
  } else {
    say('ok', `PHP sees the scheme ${url.protocol.slice(0, -1)}`);
  }
  if (report.origin.allowed) say('ok', `the origin check passes for ${origin}`);
  else say('fail', `the origin check refuses the site's own origin ${origin} (${report.origin.reason}): ${DAEMON_PROBLEMS.WSFPM_ERR_ORIGIN}`);

  // 2. Does the script itself answer?
  const script = await upgradeRequest(url, origin, timeoutMs);
  if ('error' in script) say('fail', `the script's URL failed: ${script.error}`);
  else if (script.status === 101) say('ok', `${url.pathname} accepted a websocket`);
  else {
    const code = script.headers['x-wsfpm-error'];
    if (typeof code === 'string') say('fail', `${url.pathname}: ${script.status} ${code}: ${DAEMON_PROBLEMS[code] ?? 'see the wsfpm log'}`);
    else if (script.status >= 400 && script.status < 500) say('warn', `${url.pathname}: PHP refused with ${script.status} (expected if the script wants a logged-in session; the doctor has none)`);
    else say('fail', `${url.pathname}: ${script.status}: ${proxyProblem(script.status, script.headers.server)}`);
  }

  // 3. Does the proxy cut idle websockets before wsfpm's pings would keep them alive?
  const pingIntervalMs = daemon?.pingIntervalMs ?? null;
  if (options.idleCheck > 0) findings.push(await idleCheck(probe, origin, options.idleCheck, pingIntervalMs));
  else say('warn', `idle timeout not measured (add --idle-check 70); ${pingIntervalMs === null ? 'wsfpm pings every --ping-interval' : `wsfpm pings every ${pingIntervalMs / 1000} s`}, and Apache and Nginx cut idle websockets after 60 s by default`);
  return findings;
}

/** `pingIntervalMs` null: not told (no doctor token), so a cut can only be reported, not judged. */
function idleCheck(probe: URL, origin: string, seconds: number, pingIntervalMs: number | null): Promise<Finding> {
  return new Promise((resolve) => {
    const wsUrl = new URL(probe.href);
    wsUrl.protocol = probe.protocol === 'https:' ? 'wss:' : 'ws:';
    wsUrl.search = '?idle';
    const started = Date.now();
    const ws = new WebSocket(wsUrl, { origin });
    const timer = setTimeout(() => {
      ws.close();
      resolve({ verdict: 'ok', text: `the proxy kept an idle websocket open for ${seconds} s` });
    }, seconds * 1000);
    ws.on('error', (e) => {
      clearTimeout(timer);
      resolve({ verdict: 'fail', text: `idle probe failed: ${e.message}` });
    });
    ws.on('close', () => {
      const cut = (Date.now() - started) / 1000;
      if (cut >= seconds) return;
      clearTimeout(timer);
      if (pingIntervalMs === null) {
        return resolve({ verdict: 'warn', text: `the proxy cuts idle websockets after ${cut.toFixed(1)} s: wsfpm's --ping-interval must be below ${Math.floor(cut * 0.8)} s to keep them open (with --token the doctor checks it)` });
      }
      const ok = pingIntervalMs > 0 && pingIntervalMs < cut * 1000 * 0.8;
      resolve({
        verdict: ok ? 'ok' : 'fail',
        text: ok
          ? `the proxy cuts idle websockets after ${cut.toFixed(1)} s; wsfpm pings every ${pingIntervalMs / 1000} s, which keeps them open`
          : `the proxy cuts idle websockets after ${cut.toFixed(1)} s, but wsfpm pings every ${pingIntervalMs / 1000} s: lower --ping-interval below ${Math.floor(cut * 0.8)} s, or raise the proxy's timeout (Apache ProxyTimeout / Timeout, Nginx proxy_read_timeout)`,
      });
    });
  });
}
