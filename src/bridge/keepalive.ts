/**
 * Server pings for one websocket: a peer that sent nothing (no message, no
 * pong) for a whole interval after a ping is dropped. Proxies cut idle
 * connections (nginx at 60 s), and a vanished peer would otherwise hold its
 * slot (and a bound connection its PHP worker) until TCP gives up.
 */
import type { WebSocket } from 'ws';
import { type Log } from '../log.ts';

export interface KeepAlive {
  /** The peer showed life (a message). */
  seen(): void;
  stop(): void;
}

export function keepAlive(ws: WebSocket, intervalMs: number, log: Log): KeepAlive {
  let alive = true;
  const seen = (): void => {
    alive = true;
  };
  ws.on('pong', seen);
  const timer = intervalMs > 0
    ? setInterval(() => {
        if (!alive) {
          log.info({ code: 'WSFPM_ERR_PING_TIMEOUT' }, 'client did not answer pings; dropping it');
          ws.terminate();
          return;
        }
        alive = false;
        ws.ping();
      }, intervalMs)
    : null;
  timer?.unref();
  return { seen, stop: () => timer && clearInterval(timer) };
}
