/** Writes docs/configuration.md from the code (`npm run docs:config`). */
import { writeFileSync } from 'node:fs';
import { configurationMarkdown } from '../src/help.ts';

writeFileSync(new URL('../docs/configuration.md', import.meta.url), configurationMarkdown());
