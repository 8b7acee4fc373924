/**
 * The Pusher HTTP API on wsfpm's own port, as Laravel's `pusher` and
 * `reverb` broadcasters (pusher-php-server) call it:
 *
 *   POST /apps/ID/events           {"name", "data", "channels" | "channel", "socket_id"?, "info"?}
 *   POST /apps/ID/batch_events     {"batch": [{"name", "data", "channel", "socket_id"?, "info"?}, …]}
 *   GET  /apps/ID/channels         ?filter_by_prefix=…&info=user_count
 *   GET  /apps/ID/channels/NAME    ?info=user_count,subscription_count
 *   GET  /apps/ID/channels/NAME/users
 *
 * Every request carries Pusher's signature (signatures.ts); one that does
 * not verify is answered 401 before its body is looked at, so it changes
 * nothing. Routes exist only for the configured app ids: other /apps/…
 * paths stay the site's (pages, or the site behind in front mode).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type Hub } from '../hub/hub.ts';
import { isChannelName } from '../protocol/channel-frames.ts';
import { ERRORS, type ErrorCode } from '../errors.ts';
import { PUSHER } from '../defaults.ts';
import { type Log } from '../log.ts';
import { type PusherApp } from './apps.ts';
import { checkRequestSignature } from './signatures.ts';
import { channelKind, hubEnvelope, isUserChannel } from './messages.ts';
import { type PresenceStore } from './presence.ts';
import { type PusherObserver } from './connection.ts';

export interface HttpApiContext {
  hub: Hub;
  presence: PresenceStore;
  observer: PusherObserver;
  log: Log;
}

class ApiError extends Error {
  constructor(readonly code: ErrorCode, readonly detail: string) {
    super(detail);
  }
}

const SOCKET_ID = /^\d{1,12}\.\d{1,12}$/;

/** The decoded query, keys lowercased; a key given twice is refused rather than guessed at. */
function queryOf(rawUrl: string): Map<string, string> {
  const q = rawUrl.indexOf('?');
  const params = new Map<string, string>();
  for (const [k, v] of new URLSearchParams(q === -1 ? '' : rawUrl.slice(q + 1))) {
    const key = k.toLowerCase();
    if (params.has(key)) throw new ApiError('WSFPM_ERR_PUSHER_REQUEST', `query parameter ${key} given twice`);
    params.set(key, v);
  }
  return params;
}

function channelName(raw: unknown): string {
  if (typeof raw !== 'string' || !(isChannelName(raw) || isUserChannel(raw))) throw new ApiError('WSFPM_ERR_PUSHER_REQUEST', `invalid channel name ${JSON.stringify(String(raw).slice(0, 200))}`);
  return raw;
}

interface Event {
  name: string;
  data: string;
  channels: string[];
  socketId: string | null;
  /** What to answer about each channel after publishing (`"info": "subscription_count,user_count"`). */
  info: Set<string>;
}

const EVENT_INFO = ['subscription_count', 'user_count'];

function parseEvent(v: unknown, batch: boolean): Event {
  if (typeof v !== 'object' || v === null) throw new ApiError('WSFPM_ERR_PUSHER_REQUEST', 'an event is a JSON object');
  const e = v as Record<string, unknown>;
  if (typeof e.name !== 'string' || e.name === '' || e.name.length > PUSHER.maxEventName) throw new ApiError('WSFPM_ERR_PUSHER_REQUEST', `"name" must be a string of 1 to ${PUSHER.maxEventName} characters`);
  if (typeof e.data !== 'string') throw new ApiError('WSFPM_ERR_PUSHER_REQUEST', '"data" must be a string (JSON-encode objects)');
  if (Buffer.byteLength(e.data) > PUSHER.maxEventData) throw new ApiError('WSFPM_ERR_PUSHER_REQUEST', `"data" is over ${PUSHER.maxEventData} bytes`);
  const list = !batch && Array.isArray(e.channels) ? e.channels : [e.channel];
  if (list.length === 0 || list.length > PUSHER.maxChannelsPerEvent) throw new ApiError('WSFPM_ERR_PUSHER_REQUEST', `an event goes to 1 to ${PUSHER.maxChannelsPerEvent} channels`);
  const channels = list.map(channelName);
  if (e.socket_id !== undefined && e.socket_id !== null && (typeof e.socket_id !== 'string' || !SOCKET_ID.test(e.socket_id))) throw new ApiError('WSFPM_ERR_PUSHER_REQUEST', '"socket_id" must look like 1234.5678');
  if (e.info !== undefined && typeof e.info !== 'string') throw new ApiError('WSFPM_ERR_PUSHER_REQUEST', '"info" must be a comma-separated string');
  const info = infoOf(new Map([['info', (e.info as string | undefined) ?? '']]), EVENT_INFO);
  if (info.has('user_count') && channels.some((c) => channelKind(c) !== 'presence')) throw new ApiError('WSFPM_ERR_PUSHER_REQUEST', 'info=user_count is for presence- channels');
  return { name: e.name, data: e.data, channels, socketId: (e.socket_id as string | undefined) ?? null, info };
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new ApiError('WSFPM_ERR_PUSHER_REQUEST', 'the body is not JSON');
  }
}

/** `info=a,b` as a set, refusing what this request does not offer. */
function infoOf(params: Map<string, string>, allowed: string[]): Set<string> {
  const info = new Set((params.get('info') ?? '').split(',').map((s) => s.trim()).filter(Boolean));
  for (const i of info) if (!allowed.includes(i)) throw new ApiError('WSFPM_ERR_PUSHER_REQUEST', `info=${i} is not offered here (${allowed.join(', ')})`);
  return info;
}

export async function registerHttpApi(app: FastifyInstance, apps: readonly PusherApp[], ctx: HttpApiContext): Promise<void> {
  const { hub, presence, observer } = ctx;
  const log = ctx.log.child({ api: 'pusher' });

  const publish = (e: Event): void => {
    const envelope = hubEnvelope(e.name, e.data);
    for (const channel of e.channels) {
      hub.publish(channel, envelope, false, e.socketId);
      observer.published('api');
    }
  };

  /** subscription_count (every node's subscribers) and user_count (presence) of a channel, as asked. */
  const channelInfo = async (channel: string, info: Set<string>): Promise<Record<string, number>> => ({
    ...(info.has('user_count') ? { user_count: (await presence.members(channel)).size } : {}),
    ...(info.has('subscription_count') ? { subscription_count: (await hub.membersEverywhere(channel)).length } : {}),
  });

  type Handler = (app: PusherApp, params: Map<string, string>, body: Buffer, request: FastifyRequest) => Promise<unknown> | unknown;
  const routes: Array<[method: 'GET' | 'POST', path: string, handler: Handler]> = [
    ['POST', '/events', async (_app, _params, body) => {
      const e = parseEvent(parseJson(body), false);
      publish(e);
      if (e.info.size === 0) return {};
      const channels: Record<string, object> = {};
      for (const c of e.channels) channels[c] = await channelInfo(c, e.info);
      return { channels };
    }],
    ['POST', '/batch_events', async (_app, _params, body) => {
      const batch = (parseJson(body) as { batch?: unknown } | null)?.batch;
      if (!Array.isArray(batch) || batch.length > PUSHER.maxBatch) throw new ApiError('WSFPM_ERR_PUSHER_REQUEST', `"batch" must be an array of at most ${PUSHER.maxBatch} events`);
      // All or nothing: every event is checked before any is published.
      const events = batch.map((e) => parseEvent(e, true));
      for (const e of events) publish(e);
      if (events.every((e) => e.info.size === 0)) return {};
      return { batch: await Promise.all(events.map((e) => channelInfo(e.channels[0]!, e.info))) };
    }],
    ['GET', '/channels', async (_app, params) => {
      const prefix = params.get('filter_by_prefix') ?? '';
      const info = infoOf(params, ['user_count']);
      if (info.has('user_count') && !prefix.startsWith('presence-')) throw new ApiError('WSFPM_ERR_PUSHER_REQUEST', 'info=user_count needs filter_by_prefix=presence-');
      const channels: Record<string, object> = {};
      for (const name of (await hub.channelsEverywhere(prefix)).sort()) channels[name] = info.has('user_count') ? { user_count: (await presence.members(name)).size } : {};
      return { channels };
    }],
    ['GET', '/channels/:name', async (_app, params, _body, request) => {
      const name = channelName((request.params as { name: string }).name);
      const info = infoOf(params, ['user_count', 'subscription_count']);
      if (info.has('user_count') && channelKind(name) !== 'presence') throw new ApiError('WSFPM_ERR_PUSHER_REQUEST', 'info=user_count is for presence- channels');
      return { occupied: (await hub.membersEverywhere(name)).length > 0, ...(await channelInfo(name, info)) };
    }],
    ['GET', '/channels/:name/users', async (_app, _params, _body, request) => {
      const name = channelName((request.params as { name: string }).name);
      if (channelKind(name) !== 'presence') throw new ApiError('WSFPM_ERR_PUSHER_REQUEST', 'users are listed for presence- channels only');
      return { users: [...(await presence.members(name)).keys()].map((id) => ({ id })) };
    }],
  ];

  // A scope of its own: the body arrives as bytes (body_md5 is over the bytes as sent), whatever the rest of the daemon parses.
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: PUSHER.maxBody }, (_req, body, done) => done(null, body));
    for (const pusherApp of apps) {
      for (const [method, suffix, handler] of routes) {
        scope.route({
          method,
          url: `/apps/${pusherApp.id}${suffix}`,
          handler: async (request: FastifyRequest, reply: FastifyReply) => {
            const raw = request.raw.url ?? '/';
            const q = raw.indexOf('?');
            const path = q === -1 ? raw : raw.slice(0, q);
            const body = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
            try {
              const params = queryOf(raw);
              const bad = checkRequestSignature(pusherApp, method, path, params, body, Date.now());
              if (bad) throw new ApiError('WSFPM_ERR_PUSHER_SIGNATURE', bad);
              return await handler(pusherApp, params, body, request);
            } catch (err) {
              if (!(err instanceof ApiError)) throw err;
              const spec = ERRORS[err.code];
              observer.refused(err.code);
              log.info({ code: err.code, detail: err.detail, app: pusherApp.id, method, path: path.slice(0, 200), ip: request.ip }, 'pusher API request refused');
              return reply.code(spec.status).send({ error: `${spec.message}: ${err.detail}`, code: err.code });
            }
          },
        });
      }
    }
  });
}
