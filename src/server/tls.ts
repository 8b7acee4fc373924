/**
 * TLS on wsfpm's own listener (--tls-cert, --tls-key): the options fastify
 * creates its server with, and a reload of both files on SIGHUP.
 *
 * A reload swaps the server's secure context (setSecureContext), which only
 * new connections use: open ones, websockets included, keep the context they
 * were made with, so nothing is dropped and certbot's renewal hook needs to
 * do no more than send SIGHUP. A pair that does not load (unreadable file,
 * bad PEM, a key that is not the certificate's) leaves the old pair in
 * place, with one error line.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createSecureContext, type Server as TlsServer } from 'node:tls';
import { type Config, envName, flagName } from '../config.ts';
import { ConfigError } from '../errors.ts';
import { type Log } from '../log.ts';

export interface TlsPair {
  cert: Buffer;
  key: Buffer;
}

/** Throws with what is wrong when the pair would not serve (createSecureContext checks that the key is the certificate's). */
function check(pair: TlsPair): TlsPair {
  createSecureContext(pair);
  return pair;
}

/** What a log line says about a certificate: enough to tell an old one from a renewed one. */
export function describeCert(cert: Buffer): { subject: string; validTo: string; fingerprint256: string } {
  const x = new X509Certificate(cert);
  return { subject: x.subject.replace(/\n/g, ', '), validTo: x.validTo, fingerprint256: x.fingerprint256 };
}

/**
 * Fastify's server options: `{ http }` for plain HTTP, `{ https }` with the
 * pair read now. `base` (Node's http.Server options, e.g. headersTimeout)
 * goes into either, since fastify hands `https` alone to https.createServer.
 * An unusable pair at start-up is a ConfigError (exit code 2).
 */
export function serverOptions<T extends object>(config: Config, base: T): { http: T } | { https: T & TlsPair } {
  if (!config.tlsCert) return { http: base };
  try {
    return { https: { ...base, ...check({ cert: readFileSync(config.tlsCert), key: readFileSync(config.tlsKey) }) } };
  } catch (err) {
    const names = `${flagName('tlsCert')}/${flagName('tlsKey')} (${envName('tlsCert')}/${envName('tlsKey')})`;
    throw new ConfigError(`cannot use ${names} ${config.tlsCert}, ${config.tlsKey}: ${(err as Error).message}`);
  }
}

/** Reads the pair again and serves it to new connections; false (old pair kept) when it does not load. */
export async function reloadTls(server: TlsServer, config: Config, log: Log): Promise<boolean> {
  if (!config.tlsCert) {
    log.info('TLS reload asked, but wsfpm serves plain HTTP: nothing to reload');
    return false;
  }
  try {
    const pair = check({ cert: await readFile(config.tlsCert), key: await readFile(config.tlsKey) });
    server.setSecureContext(pair);
    log.info({ cert: config.tlsCert, ...describeCert(pair.cert) }, 'TLS certificate reloaded; new connections get it');
    return true;
  } catch (err) {
    log.error({ code: 'WSFPM_ERR_TLS_RELOAD', cert: config.tlsCert, key: config.tlsKey, detail: (err as Error).message }, 'TLS reload failed; still serving the previous certificate');
    return false;
  }
}
