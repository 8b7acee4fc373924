/**
 * The package's programmatic entry (`import { createDaemon, buildConfig } from 'wsfpm'`): what bench/daemon.ts
 * and the tests use to run a daemon in-process. The command line is bin/wsfpm.js over cli.ts.
 */
export { createDaemon, type Daemon } from './server/app.ts';
export { buildConfig, type Config } from './config.ts';
export { DEFAULTS } from './defaults.ts';
export { VERSION } from './version.ts';
