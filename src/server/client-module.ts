/**
 * The browser module (client/wsfpm.js) at /.wsfpm/wsfpm.js in standalone
 * mode, so a demo page imports it from the port that serves it. Behind a web
 * server the site serves its own copy (it is one file).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';

export const CLIENT_URL = '/.wsfpm/wsfpm.js';
// src/server/ and dist/server/ both sit two levels below the package root.
export const CLIENT_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'client', 'wsfpm.js');

export function registerClientModule(app: FastifyInstance): void {
  const body = readFileSync(CLIENT_FILE);
  app.get(CLIENT_URL, (_request, reply) => reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-cache').send(body));
}
