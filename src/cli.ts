/**
 * `wsfpm [serve] [flags]` runs the daemon; `wsfpm demo` runs the echo demo
 * with a php-fpm master of its own. Parses, validates, starts; the work is
 * in server/. Exit codes: 0 clean stop, 1 runtime failure, 2 bad config.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import dotenv from 'dotenv';
import { DEFAULTS } from './defaults.ts';
import { buildConfig, envName, flagName, type Config } from './config.ts';
import { ConfigError } from './errors.ts';
import { VERSION } from './version.ts';
import { HELP } from './help.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PACKAGE_ROOT = path.resolve(HERE, '..');


function usage(): string {
  const rows = (Object.keys(DEFAULTS) as Array<keyof typeof DEFAULTS>).map((key) => {
    const flag = `${flagName(key)} <v>`.padEnd(28);
    return `  ${flag}${HELP[key] ?? ''}\n  ${''.padEnd(28)}env ${envName(key)}, default ${JSON.stringify(DEFAULTS[key])}`;
  });
  return [
    'wsfpm: websockets for PHP on php-fpm; each connection is one FastCGI request.',
    '',
    'usage: wsfpm [serve] [options]      run the daemon',
    '       wsfpm demo [echo|chat|chat-events|progress] [options]',
    '                                    run a demo (examples/NAME) with its own php-fpm pool',
    '       wsfpm doctor URL [--idle-check SECONDS] [--token DOCTOR_TOKEN]',
    '                                    check a deployment through its public websocket URL',
    '       wsfpm --help | --version',
    '',
    'Options (also read from WSFPM_* variables and a .env file in the working directory):',
    ...rows,
    '  --env-file <path>           read this file instead of ./.env',
    '',
  ].join('\n');
}

export function parseArgs(argv: string[]): { command: string; flags: Record<string, string>; envFile: string | undefined; demoName: string } {
  const known = new Map<string, string>((Object.keys(DEFAULTS) as string[]).map((k) => [flagName(k), k]));
  const flags: Record<string, string> = {};
  let command = 'serve';
  let envFile: string | undefined;
  let demoName = 'echo';
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (i === 0 && !arg.startsWith('-')) {
      if (!['serve', 'demo'].includes(arg)) throw new ConfigError(`unknown command ${JSON.stringify(arg)}; try wsfpm --help`);
      command = arg;
      continue;
    }
    if (i === 1 && command === 'demo' && !arg.startsWith('-')) {
      demoName = arg;
      continue;
    }
    if (arg === '--help' || arg === '-h') return { command: 'help', flags, envFile, demoName };
    if (arg === '--version' || arg === '-v') return { command: 'version', flags, envFile, demoName };
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg : arg.slice(0, eq);
    const value = eq === -1 ? argv[++i] : arg.slice(eq + 1);
    if (value === undefined) throw new ConfigError(`${name} needs a value`);
    if (name === '--env-file') {
      envFile = value;
      continue;
    }
    const key = known.get(name);
    if (!key) throw new ConfigError(`unknown option ${JSON.stringify(name)}; try wsfpm --help`);
    flags[key] = value;
  }
  return { command, flags, envFile, demoName };
}

/** Environment with .env values filled in where the real environment has none. */
function environment(envFile: string | undefined): NodeJS.ProcessEnv {
  const file = path.resolve(envFile ?? '.env');
  if (!existsSync(file)) {
    if (envFile) throw new ConfigError(`--env-file ${envFile}: no such file`);
    return process.env;
  }
  const parsed = dotenv.parse(readFileSync(file));
  return { ...parsed, ...process.env };
}

/** `reread` builds the settings again from the same flags and a fresh read of the environment and .env (SIGHUP). */
async function serve(config: Config, reread: () => Config = () => config): Promise<void> {
  // Loaded here rather than at the top, so --help, --version and a config error answer without loading fastify,
  // ioredis and the rest (docs/performance.md, "Start-up").
  const { createDaemon } = await import('./server/app.ts');
  const daemon = await createDaemon(config);
  const address = await daemon.app.listen({ host: config.host, port: config.port });
  daemon.app.log.info({ address, fpm: config.fpm, root: config.root, upstream: config.upstream || undefined }, 'wsfpm listening');
  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    daemon.app.log.info({ signal, open: daemon.connections(), graceMs: config.drainTimeout }, 'draining');
    await daemon.drain(config.drainTimeout);
    await daemon.app.close();
    daemon.app.log.info('stopped');
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
  // SIGHUP (systemctl reload, certbot's deploy hook) reloads the TLS certificate; without TLS it only logs, so a
  // reload never stops the service (systemd does not restart a unit that SIGHUP killed).
  process.on('SIGHUP', () => {
    void daemon.reloadTls();
    try {
      const next = reread();
      const { applied, needRestart } = daemon.reload(next);
      daemon.app.log.info({ applied, needRestart }, needRestart.length ? 'settings reloaded; some changes need a restart' : 'settings reloaded');
      // The drain timeout is read at SIGTERM time.
      config = next;
    } catch (err) {
      // A bad value on reload keeps the running settings.
      daemon.app.log.error({ code: 'WSFPM_ERR_CONFIG_RELOAD', detail: (err as Error).message }, 'settings not reloaded');
    }
  });
}

const DEMOS = ['echo', 'chat', 'chat-events', 'progress'];

async function demo(name: string, flags: Record<string, string>, env: NodeJS.ProcessEnv): Promise<void> {
  if (!DEMOS.includes(name)) throw new ConfigError(`unknown demo ${JSON.stringify(name)}: one of ${DEMOS.join(', ')}`);
  const root = path.join(PACKAGE_ROOT, 'examples', name);
  // A php-fpm master of its own on a private socket: nothing on the machine needs configuring.
  const config = buildConfig({ root, fpm: 'managed', maxConnections: '32', pages: 'true', ...flags }, env);
  console.error(`demo: scripts in ${root}, a php-fpm pool of ${config.maxConnections} workers of its own`);
  if (config.pages) console.error(`demo: open http://${config.host}:${config.port}/ in a browser`);
  if (name === 'echo') console.error(`demo: or from a terminal:  node -e "const w=new (require('ws'))('ws://${config.host}:${config.port}/echo.php');w.on('open',()=>w.send('hi'));w.on('message',m=>{console.log(String(m));w.close()})"`);
  await serve(config);
}

/**
 * `wsfpm doctor URL [--idle-check SECONDS] [--token T]`: exit 0 when nothing
 * failed, 1 otherwise. The token may come from WSFPM_DOCTOR_TOKEN instead,
 * which keeps it out of the process list.
 */
async function doctor(argv: string[]): Promise<void> {
  let target: string | undefined;
  let idle = 0;
  let token = process.env.WSFPM_DOCTOR_TOKEN ?? '';
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--idle-check') {
      idle = Number(argv[++i]);
      if (!Number.isInteger(idle) || idle < 0 || idle > 600) throw new ConfigError('--idle-check takes whole seconds from 0 to 600');
    } else if (arg === '--token') {
      token = argv[++i] ?? '';
      if (!token) throw new ConfigError('--token takes the daemon\'s --doctor-token');
    } else if (!arg.startsWith('-') && target === undefined) target = arg;
    else throw new ConfigError(`doctor: unexpected ${JSON.stringify(arg)}; usage: wsfpm doctor https://example.com/ws/chat.php [--idle-check 70] [--token T]`);
  }
  if (!target) throw new ConfigError('usage: wsfpm doctor https://example.com/ws/chat.php [--idle-check 70] [--token T]');
  const { runDoctor } = await import('./doctor.ts');
  const findings = await runDoctor(target, { idleCheck: idle, ...(token ? { token } : {}) });
  for (const f of findings) process.stdout.write(`${f.verdict.toUpperCase().padEnd(5)} ${f.text}\n`);
  process.exitCode = findings.some((f) => f.verdict === 'fail') ? 1 : 0;
}

export async function main(argv: string[]): Promise<void> {
  try {
    if (argv[0] === 'doctor') return await doctor(argv.slice(1));
    const { command, flags, envFile, demoName } = parseArgs(argv);
    if (command === 'help') return void process.stdout.write(usage());
    if (command === 'version') {
      return void process.stdout.write(`wsfpm ${VERSION}\n`);
    }
    const env = environment(envFile);
    if (command === 'demo') return await demo(demoName, flags, env);
    await serve(buildConfig(flags, env), () => buildConfig(flags, environment(envFile)));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`wsfpm: ${err.message}\n`);
      process.exit(err.exitCode);
    }
    process.stderr.write(`wsfpm: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  void main(process.argv.slice(2));
}
