/**
 * A wsfpm daemon for the chaos suite, in a process of its own so that its
 * file descriptors, heap and crashes are its own (started through
 * bench/lib/child.ts's ServerChild). The only input is one JSON argument of
 * config flags. SIGHUP reloads as `wsfpm serve` does (TLS, then the
 * reloadable settings), alternating `messageRate` between two values so that
 * every reload really changes something.
 *
 * IPC (bench/lib/daemon-ipc.ts): `stats` answers what the suite compares
 * against its baseline (open fds from /proc/self/fd, the hub's members and
 * channels, heap after a GC, the managed master's pid, the broker's state,
 * log codes counted).
 */
import { readdirSync } from 'node:fs';
import { buildConfig } from '../../src/config.ts';
import { createDaemon } from '../../src/server/app.ts';
import { answerOverIpc } from '../../bench/lib/daemon-ipc.ts';

const flags = JSON.parse(process.argv[2] ?? '{}') as Record<string, string>;
const codes: Record<string, number> = {};
/** Log lines at error level or above whose code the suite does not expect, first few. */
const errors: string[] = [];
const logStream = {
  write(line: string): void {
    let entry: { code?: unknown; level?: number; msg?: unknown };
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      return;
    }
    if (typeof entry.code === 'string') codes[entry.code] = (codes[entry.code] ?? 0) + 1;
    if ((entry.level ?? 0) >= 50 && typeof entry.code !== 'string' && errors.length < 20) errors.push(line.slice(0, 2000));
  },
};
const build = (messageRate: string) => buildConfig({ host: '127.0.0.1', port: '0', control: 'tcp:127.0.0.1:0', logLevel: 'info', ...flags, messageRate }, {});
const rates = [flags.messageRate ?? '1000', String(Number(flags.messageRate ?? '1000') + 1)];
let reloads = 0;
const daemon = await createDaemon(build(rates[0]!), logStream);
await daemon.app.listen({ host: '127.0.0.1', port: 0 });
process.on('SIGHUP', () => {
  void daemon.reloadTls();
  const { applied } = daemon.reload(build(rates[++reloads % 2]!));
  if (!applied.includes('messageRate')) errors.push(`reload ${reloads} applied ${JSON.stringify(applied)}`);
});

answerOverIpc(daemon, 'chaos', () => {
  const channels = new Set(daemon.hub.list().flatMap((m) => m.channels));
  const memory = process.memoryUsage();
  return {
    fds: readdirSync('/proc/self/fd').length,
    members: daemon.hub.size,
    channels: channels.size,
    connections: daemon.connections(),
    heapUsed: memory.heapUsed,
    rss: memory.rss,
    managedPid: daemon.managed?.pool.pid ?? 0,
    broker: daemon.broker?.state.connected ?? null,
    reloads,
    codes,
    errors,
  };
});
