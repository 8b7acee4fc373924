/**
 * CGI parameters for a bound websocket request, shaped like those Apache's
 * mod_proxy_fcgi and Nginx's fastcgi_params give a page, so PHP code sees the
 * superglobals it already knows. What differs for streaming is explained in
 * docs/protocol.md (GET with a huge CONTENT_LENGTH, no Content-Type, no
 * Accept-Encoding).
 */
import { PROTOCOL_VERSION } from '../protocol/frames.ts';
import { type ResolvedScript } from './resolve.ts';

export const STREAM_CONTENT_LENGTH = '9223372036854775807';

const TOKEN = /^[!#$%&'*+\-.^`|~0-9A-Za-z]+$/; // the RFC 9110 token set less '_'

/**
 * Headers never forwarded as HTTP_*: the ones whose CGI names are set from
 * other sources, `Proxy` (httpoxy: HTTP_PROXY is read as a proxy setting by
 * many HTTP clients) and `Accept-Encoding` (zlib output compression would
 * wrap the frames in gzip).
 */
const DROPPED = new Set(['content-type', 'content-length', 'proxy', 'accept-encoding', 'transfer-encoding']);

export interface RequestFacts {
  method: string;
  /** The request target as received, path and query. */
  url: string;
  /** Node's rawHeaders: name, value, name, value … */
  rawHeaders: readonly string[];
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
  https: boolean;
  /** Host as PHP should see it (from Host, or a trusted X-Forwarded-Host). */
  host: string;
  connectionId: string;
  maxMessage: number;
  /** More wsfpm parameters (the control API's address and token). */
  extra?: Record<string, string>;
}

export function splitHost(host: string, https: boolean): { name: string; port: string } {
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(host);
  if (!m) return { name: host, port: https ? '443' : '80' };
  return { name: m[1]!, port: m[2] ?? (https ? '443' : '80') };
}

/** The HTTP_* parameters; names with '_' or non-token characters are dropped, and so are the names in `dropped` (lowercase). */
export function headerParams(rawHeaders: readonly string[], dropped: ReadonlySet<string> = DROPPED): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (!TOKEN.test(name)) continue;
    const lower = name.toLowerCase();
    if (dropped.has(lower)) continue;
    const key = 'HTTP_' + name.toUpperCase().replace(/-/g, '_');
    const value = rawHeaders[i + 1]!;
    const prev = out.get(key);
    out.set(key, prev === undefined ? value : prev + (lower === 'cookie' ? '; ' : ', ') + value);
  }
  return out;
}

export function buildParams(req: RequestFacts, script: ResolvedScript): Array<[string, string]> {
  return cgiParams(req, script, 'GET', STREAM_CONTENT_LENGTH, [
    ['WSFPM_PROTOCOL', String(PROTOCOL_VERSION)],
    ['WSFPM_CONNECTION_ID', req.connectionId],
    ['WSFPM_MAX_MESSAGE', String(req.maxMessage)],
  ], DROPPED);
}

/** What a page request (not a websocket) adds to the connection facts. */
export interface PageFacts extends Omit<RequestFacts, 'connectionId' | 'maxMessage'> {
  /** The body's real length in bytes; 0 without a body. */
  contentLength: number;
  /** The request's Content-Type, if it had one. */
  contentType?: string;
}

/**
 * Headers not forwarded as HTTP_* for a page: those with CGI names of their
 * own (CONTENT_TYPE, CONTENT_LENGTH), the body framing the daemon has
 * already undone, and `Proxy` (httpoxy). Accept-Encoding is forwarded: a
 * page may compress its own output.
 */
const PAGE_DROPPED = new Set(['content-type', 'content-length', 'proxy', 'transfer-encoding']);

/**
 * CGI parameters for an ordinary page request, as Apache's mod_proxy_fcgi
 * gives them: the real method, CONTENT_LENGTH (the body's real length, 0
 * for none) and CONTENT_TYPE. No WSFPM_* parameters, so the helper
 * library's accept() refuses to run on a page request.
 */
export function buildPageParams(req: PageFacts, script: ResolvedScript): Array<[string, string]> {
  const extra: Array<[string, string]> = req.contentType !== undefined ? [['CONTENT_TYPE', req.contentType]] : [];
  return cgiParams(req, script, req.method, String(req.contentLength), extra, PAGE_DROPPED);
}

type CommonFacts = Omit<RequestFacts, 'connectionId' | 'maxMessage'>;

function cgiParams(
  req: CommonFacts,
  script: ResolvedScript,
  method: string,
  contentLength: string,
  extra: Array<[string, string]>,
  dropped: ReadonlySet<string>,
): Array<[string, string]> {
  const q = req.url.indexOf('?');
  const query = q === -1 ? '' : req.url.slice(q + 1);
  const { name: serverName, port: serverPort } = splitHost(req.host, req.https);
  const params: Array<[string, string]> = [
    ['GATEWAY_INTERFACE', 'CGI/1.1'],
    ['SERVER_SOFTWARE', 'wsfpm'],
    ['SERVER_PROTOCOL', 'HTTP/1.1'],
    ['REQUEST_METHOD', method],
    ['REQUEST_SCHEME', req.https ? 'https' : 'http'],
    ['REQUEST_URI', req.url],
    ['QUERY_STRING', query],
    ['DOCUMENT_ROOT', script.documentRoot],
    ['CONTEXT_DOCUMENT_ROOT', script.documentRoot],
    ['CONTEXT_PREFIX', ''],
    ['SCRIPT_FILENAME', script.filename],
    ['SCRIPT_NAME', script.scriptName],
    ['PHP_SELF', script.scriptName + script.pathInfo],
    ['SERVER_NAME', serverName],
    ['SERVER_PORT', serverPort],
    ['SERVER_ADDR', req.localAddress],
    ['REMOTE_ADDR', req.remoteAddress],
    ['REMOTE_PORT', String(req.remotePort)],
    ['CONTENT_LENGTH', contentLength],
    ['REQUEST_TIME_FLOAT', (Date.now() / 1000).toFixed(6)],
    ...extra,
  ];
  if (script.pathInfo) {
    params.push(['PATH_INFO', script.pathInfo], ['PATH_TRANSLATED', script.documentRoot + script.pathInfo]);
  }
  for (const [k, v] of Object.entries(req.extra ?? {})) params.push([k, v]);
  if (req.https) params.push(['HTTPS', 'on']);
  for (const [k, v] of headerParams(req.rawHeaders, dropped)) {
    if (k === 'HTTP_HOST') continue;
    params.push([k, v]);
  }
  params.push(['HTTP_HOST', req.host]);
  return params;
}
