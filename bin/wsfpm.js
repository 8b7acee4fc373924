#!/usr/bin/env node
// The installed package runs the compiled dist/ (built by prepack), with no compiler at run time. A git clone,
// where src/ sits beside this file, runs the sources through tsx (a devDependency) instead, so an edit never
// meets a stale dist/ left by an earlier `npm pack`.
import { existsSync } from 'node:fs';

const sources = new URL('src/cli.ts', new URL('..', import.meta.url));
let cli;
if (existsSync(sources)) {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import(sources.href);
} else {
  cli = await import('../dist/cli.js');
}
await cli.main(process.argv.slice(2));
