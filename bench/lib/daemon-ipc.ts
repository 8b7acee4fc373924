/**
 * The child's side of bench/lib/child.ts for a wsfpm daemon (bench/daemon.ts,
 * test/helpers/chaos-daemon.ts): sends `{ type: 'ready', port, control }`,
 * answers `stats` with `stats()` taken after a GC (when run with
 * --expose-gc), and exits on `stop`, SIGTERM or when the parent's IPC
 * channel goes away, closing every websocket with 1001 first.
 */
import { type Daemon } from '../../src/server/app.ts';

export function answerOverIpc(daemon: Daemon, label: string, stats: () => object): void {
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(0), 5000).unref();
    try {
      daemon.closeAll(1001, `${label} over`);
      await daemon.app.close();
    } finally {
      process.exit(0);
    }
  };
  process.on('message', (raw) => {
    const msg = raw as { id: number; cmd: string };
    if (msg.cmd === 'stop') return void stop();
    if (msg.cmd === 'stats') {
      const gc = (globalThis as { gc?: () => void }).gc;
      gc?.();
      process.send?.({ id: msg.id, ...stats(), gc: Boolean(gc) });
    }
  });
  process.on('disconnect', () => void stop());
  process.on('SIGTERM', () => void stop());
  const addr = daemon.app.server.address();
  process.send?.({ type: 'ready', port: typeof addr === 'object' && addr ? addr.port : 0, control: daemon.control?.address ?? null });
}
