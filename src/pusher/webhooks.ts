/**
 * Pusher webhooks, run as a POST of a PHP script through php-fpm directly
 * (`webhook=/path.php` per app: a script under --root), so a site gets them
 * without a public URL or an HTTP hop. The request is what Pusher sends:
 *
 *   body    {"time_ms": N, "events": [{"name": "channel_occupied", "channel": "…"}, …]}
 *   headers X-Pusher-Key: KEY, X-Pusher-Signature: hex(HMAC-SHA256(secret, body))
 *
 * Events of one tick go in one request; an app has one request in flight
 * (a webhook takes a php-fpm worker from the site's pages) and at most
 * PUSHER.maxWebhookQueue events waiting: more are dropped, with one log line
 * per batch, rather than piling up. A script that fails (non-2xx status, no
 * answer within PUSHER.webhookTimeout) is logged; there is no retry.
 */
import path from 'node:path';
import { type FpmAddress } from '../fastcgi/address.ts';
import { fcgiFetch } from '../fastcgi/fetch.ts';
import { PUSHER } from '../defaults.ts';
import { type Log } from '../log.ts';
import { VERSION } from '../version.ts';
import { type PusherApp } from './apps.ts';
import { hmacHex } from './signatures.ts';

export type WebhookEvent =
  | { name: 'channel_occupied' | 'channel_vacated'; channel: string }
  | { name: 'member_added' | 'member_removed'; channel: string; user_id: string }
  | { name: 'client_event'; channel: string; event: string; data: string; socket_id: string; user_id?: string };

interface Queue {
  events: WebhookEvent[];
  busy: boolean;
  scheduled: boolean;
  dropped: number;
}

export class Webhooks {
  readonly #queues = new Map<PusherApp, Queue>();

  constructor(private readonly fpm: FpmAddress, private readonly root: () => string, private readonly log: Log) {}

  send(app: PusherApp, event: WebhookEvent): void {
    if (!app.webhook) return;
    let q = this.#queues.get(app);
    if (!q) this.#queues.set(app, (q = { events: [], busy: false, scheduled: false, dropped: 0 }));
    if (q.events.length >= PUSHER.maxWebhookQueue) {
      q.dropped++;
      return;
    }
    q.events.push(event);
    this.#schedule(app, q);
  }

  #schedule(app: PusherApp, q: Queue): void {
    if (q.scheduled || q.busy) return;
    q.scheduled = true;
    setImmediate(() => {
      q.scheduled = false;
      void this.#flush(app, q);
    });
  }

  async #flush(app: PusherApp, q: Queue): Promise<void> {
    if (q.events.length === 0) return;
    const events = q.events.splice(0, PUSHER.maxWebhookBatch);
    if (q.dropped > 0) {
      this.log.warn({ code: 'WSFPM_ERR_PUSHER_WEBHOOK', app: app.id, detail: `${q.dropped} events dropped: the webhook script is not keeping up` }, 'pusher webhook failed');
      q.dropped = 0;
    }
    q.busy = true;
    const body = Buffer.from(JSON.stringify({ time_ms: Date.now(), events }));
    const root = this.root();
    try {
      const res = await fcgiFetch(this.fpm, {
        GATEWAY_INTERFACE: 'CGI/1.1',
        SERVER_SOFTWARE: `wsfpm/${VERSION}`,
        SERVER_PROTOCOL: 'HTTP/1.1',
        SERVER_NAME: 'localhost',
        REQUEST_METHOD: 'POST',
        REQUEST_URI: app.webhook,
        SCRIPT_NAME: app.webhook,
        SCRIPT_FILENAME: path.join(root, app.webhook),
        DOCUMENT_ROOT: root,
        QUERY_STRING: '',
        REMOTE_ADDR: '127.0.0.1',
        CONTENT_TYPE: 'application/json',
        HTTP_X_PUSHER_KEY: app.key,
        HTTP_X_PUSHER_SIGNATURE: hmacHex(app.secret, body.toString('utf8')),
      }, body, 32 * 1024, PUSHER.webhookTimeout);
      if (res.head.status < 200 || res.head.status > 299) {
        this.log.warn({ code: 'WSFPM_ERR_PUSHER_WEBHOOK', app: app.id, script: app.webhook, status: res.head.status, detail: res.stderr.slice(0, 3).join(' | ') }, 'pusher webhook failed');
      }
    } catch (err) {
      this.log.warn({ code: 'WSFPM_ERR_PUSHER_WEBHOOK', app: app.id, script: app.webhook, detail: (err as Error).message }, 'pusher webhook failed');
    } finally {
      q.busy = false;
      if (q.events.length > 0) this.#schedule(app, q);
    }
  }
}
