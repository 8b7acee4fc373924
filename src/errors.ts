/**
 * Every failure wsfpm reports is built here, so that each one has a stable
 * code, one message shape, and the HTTP status (before the handshake) or
 * WebSocket close code (after it) that it maps to. Code at the edges turns a
 * WsfpmError into exactly one response and one log line; nothing throws
 * across a socket.
 */

export interface ErrorSpec {
  /** HTTP status when the failure happens before the 101. */
  readonly status: number;
  /** WebSocket close code when it happens after the 101. */
  readonly close: number;
  /** Stable one-line description; details go in `detail`. */
  readonly message: string;
}

export const ERRORS = Object.freeze({
  // Handshake, decided before PHP is asked.
  WSFPM_ERR_NOT_UPGRADE: { status: 426, close: 1002, message: 'this endpoint only speaks websocket' },
  WSFPM_ERR_BAD_HANDSHAKE: { status: 400, close: 1002, message: 'invalid websocket handshake' },
  WSFPM_ERR_ORIGIN: { status: 403, close: 1008, message: 'cross-origin websocket refused' },
  WSFPM_ERR_NOT_FOUND: { status: 404, close: 1008, message: 'no script for this path' },
  WSFPM_ERR_BAD_TARGET: { status: 400, close: 1002, message: 'request target that cannot be passed on' },
  WSFPM_ERR_INTERNAL: { status: 500, close: 1011, message: 'internal error in wsfpm (a bug; the log has its stack)' },
  WSFPM_ERR_TOO_MANY: { status: 503, close: 1013, message: 'connection limit reached' },
  // php-fpm, before the 101.
  WSFPM_ERR_FPM_UNREACHABLE: { status: 502, close: 1011, message: 'php-fpm is unreachable' },
  WSFPM_ERR_POOL_FULL: { status: 503, close: 1013, message: 'every php-fpm worker is busy' },
  WSFPM_ERR_FPM_BUSY: { status: 503, close: 1013, message: 'php-fpm did not answer in time (pool saturated?)' },
  WSFPM_ERR_FPM_PROTOCOL: { status: 502, close: 1011, message: 'php-fpm broke the FastCGI protocol' },
  WSFPM_ERR_PHP_HEADERS: { status: 502, close: 1011, message: 'PHP sent an invalid header block' },
  WSFPM_ERR_PHP_ENDED: { status: 502, close: 1011, message: 'PHP ended before answering the handshake' },
  // After the 101.
  WSFPM_ERR_PHP_FRAME: { status: 502, close: 1011, message: 'PHP sent an invalid frame' },
  WSFPM_ERR_PHP_DIED: { status: 502, close: 1011, message: 'PHP request ended abnormally' },
  WSFPM_ERR_MESSAGE_TOO_BIG: { status: 413, close: 1009, message: 'message exceeds the size limit' },
  WSFPM_ERR_SLOW_CONSUMER: { status: 503, close: 1013, message: 'connection cannot keep up with its deliveries' },
  WSFPM_ERR_RATE_LIMIT: { status: 429, close: 1008, message: 'client sent messages too fast' },
  WSFPM_ERR_TOO_MANY_FROM_IP: { status: 429, close: 1008, message: 'too many connections from this address' },
  WSFPM_ERR_DRAINING: { status: 503, close: 1001, message: 'the server is shutting down' },
  // Events mode: an event request that never answered (php-fpm saturated, or the script hangs).
  WSFPM_ERR_EVENT_TIMEOUT: { status: 504, close: 1011, message: 'PHP did not answer an event in time' },
  // A wsfpm_resume query parameter that does not read as EPOCH.OFFSET.CHANNEL: ignored, never a close.
  WSFPM_ERR_BAD_RESUME: { status: 400, close: 1008, message: 'malformed wsfpm_resume position' },
  // A side-channel connection without a valid one-time token: refused and logged; PHP falls back to STDIN/STDOUT.
  WSFPM_ERR_CHANNEL_TOKEN: { status: 403, close: 1008, message: 'side channel refused: no valid token' },
  WSFPM_ERR_PING_TIMEOUT: { status: 408, close: 1006, message: 'client did not answer pings' },
  // In front of a site (--upstream): what wsfpm answers when the site behind fails.
  WSFPM_ERR_UPSTREAM_DOWN: { status: 502, close: 1011, message: 'the site behind wsfpm is unreachable' },
  WSFPM_ERR_UPSTREAM_TIMEOUT: { status: 504, close: 1011, message: 'the site behind wsfpm did not answer in time' },
  // The Pusher face (src/pusher/). After the 101, `close` is the code of the pusher:error
  // event, from the protocol's own table: 4000–4099 also close the socket (pusher-js does not
  // reconnect), 4200–4299 and 4300–4399 leave it open.
  WSFPM_ERR_PUSHER_UNKNOWN_APP: { status: 404, close: 4001, message: 'App key does not exist' },
  WSFPM_ERR_PUSHER_OVER_QUOTA: { status: 503, close: 4004, message: 'Application is over connection quota' },
  WSFPM_ERR_PUSHER_PROTOCOL_VERSION: { status: 400, close: 4007, message: 'Unsupported protocol version' },
  WSFPM_ERR_PUSHER_NO_PROTOCOL: { status: 400, close: 4008, message: 'No protocol version supplied' },
  WSFPM_ERR_PUSHER_UNAUTHORIZED: { status: 401, close: 4009, message: 'Connection is unauthorized' },
  WSFPM_ERR_PUSHER_BAD_MESSAGE: { status: 400, close: 4200, message: 'Invalid message format' },
  WSFPM_ERR_PUSHER_CLIENT_EVENT: { status: 403, close: 4301, message: 'Client event rejected' },
  WSFPM_ERR_PUSHER_CLIENT_EVENT_RATE: { status: 429, close: 4301, message: 'Client event rejected due to rate limit' },
  // The Pusher HTTP API (/apps/ID/…): `status` is its answer.
  WSFPM_ERR_PUSHER_SIGNATURE: { status: 401, close: 1008, message: 'Invalid request signature' },
  WSFPM_ERR_PUSHER_REQUEST: { status: 400, close: 1008, message: 'Invalid request' },
  // An app's webhook script (webhook=/path.php) failed; only the log sees it.
  WSFPM_ERR_PUSHER_WEBHOOK: { status: 502, close: 1011, message: 'The webhook script failed' },
} satisfies Record<string, ErrorSpec>);

export type ErrorCode = keyof typeof ERRORS;

export class WsfpmError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly closeCode: number;
  readonly detail: string | undefined;

  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown }) {
    const spec: ErrorSpec = ERRORS[code];
    super(detail ? `${spec.message}: ${detail}` : spec.message, options);
    this.name = 'WsfpmError';
    this.code = code;
    this.status = spec.status;
    this.closeCode = spec.close;
    this.detail = detail;
  }
}

export function wsfpmError(code: ErrorCode, detail?: string, cause?: unknown): WsfpmError {
  return new WsfpmError(code, detail, cause === undefined ? undefined : { cause });
}

/** A configuration or start-up problem: the CLI prints it and exits with `exitCode`. */
export class ConfigError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}
