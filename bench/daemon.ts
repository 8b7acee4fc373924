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
import { answerOverIpc } from './lib/daemon-ipc.ts';

const flags = JSON.parse(process.argv[2] ?? '{}') as Record<string, string>;
const config = buildConfig({ host: '127.0.0.1', port: '0', control: 'tcp:127.0.0.1:0', logLevel: 'silent', ...flags }, {});
const daemon = await createDaemon(config);
await daemon.app.listen({ host: config.host, port: config.port });
answerOverIpc(daemon, 'bench', () => ({ connections: daemon.connections(), memory: process.memoryUsage() }));
