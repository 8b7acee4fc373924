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
  });
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

/**
 * A 503 when php-fpm's status listener says no worker is idle: a request
 * now would only queue. If the status cannot be read, the upgrade goes
 * ahead (the handshake timeout still bounds it) and the failure is logged.
 */
export async function poolIsFull(status: FpmAddress, log: Log): Promise<WsfpmError | null> {
  try {
    const s = await readPoolStatus(status);
    return s.idle > 0 ? null : wsfpmError('WSFPM_ERR_POOL_FULL', `${s.active} of ${s.total} workers busy`);
  } catch (err) {
    log.warn({ code: 'WSFPM_ERR_FPM_STATUS', detail: (err as Error).message }, 'cannot read php-fpm status; going ahead');
    return null;
  }
}
