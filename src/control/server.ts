/**
 * The control API: how a page request, a cron job or a queue worker reaches
 * websocket connections it is not bound to (publish to a channel, send to a
 * connection id, close one, presence). Its own listener, loopback or a unix
 * socket, never the public port; every route but /healthz needs the bearer
 * token. Routes and answers: docs/protocol.md, "The control API".
 */
import { timingSafeEqual } from 'node:crypto';
import { chmod, rm } from 'node:fs/promises';
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { type FpmAddress, formatFpmAddress } from '../fastcgi/address.ts';
import { isChannelName, isConnectionId } from '../protocol/channel-frames.ts';
import { type Hub } from '../hub/hub.ts';
import { type Log } from '../log.ts';
import { type Metrics } from '../metrics.ts';

export interface ControlOptions {
  address: FpmAddress;
  token: string;
  maxMessage: number;
}

export interface Control {
  /** Where it listens, in --control form (the real port when 0 was asked). */
  address: string;
  close(): Promise<void>;
}

function badRequest(reply: FastifyReply, error: string): FastifyReply {
  return reply.code(400).send({ error, code: 'WSFPM_ERR_CONTROL_REQUEST' });
}

function payload(body: { data?: unknown; binary?: unknown }): { data: Buffer; binary: boolean } | string {
  if (typeof body.data !== 'string') return 'data must be a string (base64 when binary is true)';
  const binary = body.binary === true;
  return { data: binary ? Buffer.from(body.data, 'base64') : Buffer.from(body.data, 'utf8'), binary };
}

export async function startControl(options: ControlOptions, hub: Hub, metrics: Metrics, log: Log): Promise<Control> {
  const app: FastifyInstance = Fastify({
    logger: false,
    logController: new LogController({ disableRequestLogging: true }),
    // JSON-encoded data grows by a third when base64'd; room for that and the envelope.
    bodyLimit: Math.ceil(options.maxMessage * 1.4) + 4096,
  });
  const expected = Buffer.from(`Bearer ${options.token}`);

  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    // Read-only and loopback-only: load balancer checks and Prometheus scrapes need no token.
    if (request.url === '/healthz' || request.url === '/metrics') return;
    const got = Buffer.from(request.headers.authorization ?? '');
    if (got.length !== expected.length || !timingSafeEqual(got, expected)) {
      log.warn({ code: 'WSFPM_ERR_CONTROL_AUTH', path: request.url, ip: request.socket.remoteAddress }, 'control request without a valid token');
      return reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'missing or wrong bearer token', code: 'WSFPM_ERR_CONTROL_AUTH' });
    }
  });

  app.get('/healthz', async () => ({ ok: true }));

  app.get('/metrics', async (_request, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  app.post('/publish', async (request, reply) => {
    const body = (request.body ?? {}) as { channel?: unknown; exclude?: unknown };
    if (typeof body.channel !== 'string' || !isChannelName(body.channel)) return badRequest(reply, 'channel must be 1-128 characters of A-Z a-z 0-9 _ . : @ / = , ; -');
    if (body.exclude !== undefined && (typeof body.exclude !== 'string' || !isConnectionId(body.exclude))) return badRequest(reply, 'exclude must be a connection id');
    const p = payload(request.body as object);
    if (typeof p === 'string') return badRequest(reply, p);
    return { reached: await hub.publishCounted(body.channel, p.data, p.binary, (body.exclude as string | undefined) ?? null) };
  });

  app.post('/send', async (request, reply) => {
    const body = (request.body ?? {}) as { id?: unknown };
    if (typeof body.id !== 'string' || !isConnectionId(body.id)) return badRequest(reply, 'id must be a connection id (32 hex characters)');
    const p = payload(request.body as object);
    if (typeof p === 'string') return badRequest(reply, p);
    return { reached: await hub.sendCounted(body.id, p.data, p.binary) };
  });

  app.post('/close', async (request, reply) => {
    const body = (request.body ?? {}) as { id?: unknown; code?: unknown; reason?: unknown };
    if (typeof body.id !== 'string' || !isConnectionId(body.id)) return badRequest(reply, 'id must be a connection id (32 hex characters)');
    const code = body.code ?? 1000;
    if (typeof code !== 'number' || !(code === 1000 || code === 1001 || code === 1008 || code === 1011 || code === 1012 || code === 1013 || (code >= 3000 && code <= 4999))) {
      return badRequest(reply, 'code must be 1000, 1001, 1008, 1011, 1012, 1013 or 3000-4999');
    }
    const reason = typeof body.reason === 'string' ? body.reason : '';
    if (Buffer.byteLength(reason) > 123) return badRequest(reply, 'reason must be at most 123 bytes');
    return { reached: await hub.closeCounted(body.id, code, reason) };
  });

  app.get('/channels/:name', async (request, reply) => {
    const { name } = request.params as { name: string };
    if (!isChannelName(name)) return badRequest(reply, 'invalid channel name');
    return { channel: name, members: await hub.membersEverywhere(name) };
  });

  app.get('/connections', async () => ({ connections: hub.list() }));

  const a = options.address;
  let address: string;
  if (a.kind === 'unix') {
    await rm(a.path, { force: true });
    await app.listen({ path: a.path });
    // The token guards it too, but only the daemon's user (and its group, e.g. the web server's) need the socket.
    await chmod(a.path, 0o660);
    address = formatFpmAddress(a);
  } else {
    await app.listen({ host: a.host, port: a.port });
    const bound = app.server.address();
    address = formatFpmAddress({ kind: 'tcp', host: a.host, port: typeof bound === 'object' && bound ? bound.port : a.port });
  }
  log.info({ control: address }, 'control API listening');
  return { address, close: () => app.close() };
}
