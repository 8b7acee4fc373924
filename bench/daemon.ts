/**
 * The wsfpm daemon under test, in a process of its own (spawned by
 * bench/lib/child.ts): createDaemon with buildConfig, exactly as `wsfpm serve`
 * builds it, listening on 127.0.0.1 and an ephemeral port. The only input is
 * one JSON argument of config flags (merged over the bench defaults); the
 * machine's WSFPM_* environment and .env are ignored, so they cannot skew a run.
 *
 * IPC: sends `{ type: 'ready', port }`; answers `stats` (open connections,
 * process.memoryUsage() after a GC when run with --expose-gc) and exits on
 * `stop` (a clean exit, so --cpu-prof writes its profile) or when the bench's
 * IPC channel goes away.
 */
import { buildConfig } from '../src/config.ts';
import { createDaemon } from '../src/server/app.ts';

const flags = JSON.parse(process.argv[2] ?? '{}') as Record<string, string>;
const config = buildConfig({ host: '127.0.0.1', port: '0', control: 'tcp:127.0.0.1:0', logLevel: 'silent', ...flags }, {});
const daemon = await createDaemon(config);
await daemon.app.listen({ host: config.host, port: config.port });
const addr = daemon.app.server.address();
const port = typeof addr === 'object' && addr ? addr.port : 0;

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  const timer = setTimeout(() => process.exit(0), 5000);
  timer.unref();
  try {
    daemon.closeAll(1001, 'bench over');
    await daemon.app.close();
  } finally {
    process.exit(0);
  }
}

process.on('message', (raw) => {
  const msg = raw as { id: number; cmd: string };
  if (msg.cmd === 'stop') return void stop();
  if (msg.cmd === 'stats') {
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    process.send?.({ id: msg.id, connections: daemon.connections(), memory: process.memoryUsage(), gc: Boolean(gc) });
  }
});
process.on('disconnect', () => void stop());
process.on('SIGTERM', () => void stop());
process.send?.({ type: 'ready', port, control: daemon.control?.address ?? null });
