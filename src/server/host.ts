/**
 * The Host check for page requests: Node only insists that an HTTP/1.1
 * request has one, not that it is a single, well-formed host.
 */

/** reg-name or IP literal, optional port (RFC 9110 §7.2, RFC 3986 §3.2.2), as browsers send it. */
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::\d{1,5})?$/;

/** Null when the Host header is absent (HTTP/1.0; Node refuses an HTTP/1.1 request without one) or valid. */
export function checkHost(rawHeaders: readonly string[]): string | null {
  let seen: string | undefined;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() !== 'host') continue;
    if (seen !== undefined) return 'more than one Host header';
    seen = rawHeaders[i + 1]!;
  }
  if (seen === undefined) return null;
  if (seen.length > 255 || !HOST.test(seen)) return `invalid Host ${JSON.stringify(seen.slice(0, 100))}`;
  return null;
}
