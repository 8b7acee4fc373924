/**
 * php-fpm's own status page, read through the pool's `pm.status_listen`
 * socket: a separate listener that still answers when every worker is
 * busy. A full pool queues new requests silently, so wsfpm asks here before
 * binding a connection and refuses with 503 at once instead of waiting.
 */
import { type FpmAddress } from '../fastcgi/address.ts';
import { fcgiFetch } from '../fastcgi/fetch.ts';
import { wsfpmError, type WsfpmError } from '../errors.ts';
import { type Log } from '../log.ts';

export interface PoolStatus {
  idle: number;
  active: number;
  total: number;
  maxChildrenReached: number;
  listenQueue: number;
}

/**
 * The status listener answers from the master itself, in well under a millisecond; one that has not
 * answered in this long is wedged, and upgrades waiting on the reading must not wait with it, ms.
 */
const STATUS_TIMEOUT_MS = 1000;

export async function readPoolStatus(address: FpmAddress, path = '/status'): Promise<PoolStatus> {
  const res = await fcgiFetch(address, {
    REQUEST_METHOD: 'GET',
    SCRIPT_NAME: path,
    SCRIPT_FILENAME: path,
    REQUEST_URI: `${path}?json`,
    QUERY_STRING: 'json',
    SERVER_NAME: 'localhost',
    SERVER_PORT: '80',
    REMOTE_ADDR: '127.0.0.1',
  }, undefined, undefined, STATUS_TIMEOUT_MS);
  if (res.head.status !== 200) throw new Error(`status page answered ${res.head.status}`);
  const j = JSON.parse(res.body.toString('utf8')) as Record<string, number>;
  return {
    idle: j['idle processes'] ?? 0,
    active: j['active processes'] ?? 0,
    total: j['total processes'] ?? 0,
    maxChildrenReached: j['max children reached'] ?? 0,
    listenQueue: j['listen queue'] ?? 0,
  };
}

/** How long one reading of the status page stands for admissions, ms. */
const STATUS_FRESH_MS = 250;

/**
 * A 503 when php-fpm's status listener says no worker is idle: a request
 * now would only queue. One reading serves the upgrades of the next
 * STATUS_FRESH_MS, each counting one idle worker off it, and upgrades that
 * arrive while a reading is under way share it: a burst of connections
 * costs a few status requests, not one each. When the count runs out or
 * the reading is old the page is asked again. If it cannot be read, the
 * upgrade goes ahead (the handshake timeout still bounds it) and the
 * failure is logged once per reading.
 */
export class PoolGate {
  readonly #status: FpmAddress;
  readonly #log: Log;
  #idle = 0;
  #total = 0;
  #at = 0;
  #reading: Promise<boolean> | null = null;

  constructor(status: FpmAddress, log: Log) {
    this.#status = status;
    this.#log = log;
  }

  async admit(): Promise<WsfpmError | null> {
    if (this.#idle <= 0 || Date.now() - this.#at >= STATUS_FRESH_MS) {
      if (!(await this.#read())) return null;
    }
    if (this.#idle <= 0) return wsfpmError('WSFPM_ERR_POOL_FULL', `${this.#total - this.#idle} of ${this.#total} workers busy`);
    this.#idle--;
    return null;
  }

  /** False when the page could not be read (logged). */
  #read(): Promise<boolean> {
    this.#reading ??= readPoolStatus(this.#status).then(
      (s) => {
        this.#idle = s.idle;
        this.#total = s.total;
        this.#at = Date.now();
        return true;
      },
      (err: unknown) => {
        this.#log.warn({ code: 'WSFPM_ERR_FPM_STATUS', detail: (err as Error).message }, 'cannot read php-fpm status; going ahead');
        return false;
      },
    ).finally(() => {
      this.#reading = null;
    });
    return this.#reading;
  }
}
