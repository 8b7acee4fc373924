/**
 * The Pusher apps this daemon answers for, from `--pusher-apps
 * ID:KEY:SECRET[:client-events[=N]][:webhook=/path.php][,…]`. The key names the app in the
 * websocket URL (`/app/KEY`) and in signed HTTP API requests; the secret
 * signs channel auth and API requests and never leaves the server.
 *
 * Every app shares the daemon's one hub: several apps are several keys for
 * one site (key rotation, a second front end), not tenants kept apart.
 */
import { PUSHER } from '../defaults.ts';

export interface PusherApp {
  readonly id: string;
  readonly key: string;
  readonly secret: string;
  /** Client events (`client-*`) per second one connection may send; 0: client events are off for this app. */
  readonly clientEventRate: number;
  /** A script under --root that php-fpm runs for this app's webhooks (`/hooks/pusher.php`); '' for none. */
  readonly webhook: string;
}

const NAME = /^[A-Za-z0-9_.-]{1,128}$/;
// A secret is compared with HMACs only; what matters is that it is long enough not to be guessed.
const SECRET = /^[\x21-\x2b\x2d-\x39\x3b-\x7e]{16,256}$/;

/** Parses the setting; throws an Error whose message says what is wrong and what is accepted. */
export function parsePusherApps(raw: string): PusherApp[] {
  const apps: PusherApp[] = [];
  for (const item of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [id = '', key = '', secret = '', ...options] = item.split(':');
    const shown = `${id}:${key}:…`;
    if (!NAME.test(id) || !NAME.test(key)) throw new Error(`${JSON.stringify(shown)}: expected ID:KEY:SECRET[:client-events], ID and KEY of letters, digits, _ . -`);
    if (!SECRET.test(secret)) throw new Error(`app ${id}: the secret must be 16 to 256 printable characters without , or : (it signs every private channel)`);
    let clientEventRate = 0;
    let webhook = '';
    for (const option of options) {
      const events = /^client-events(?:=(\d{1,4}))?$/.exec(option);
      const hook = /^webhook=(\/[^\s?#]*\.php)$/.exec(option);
      if (events) {
        clientEventRate = events[1] === undefined ? PUSHER.clientEventRate : Number(events[1]);
        if (clientEventRate < 1) throw new Error(`app ${id}: client-events=N needs N of at least 1`);
      } else if (hook && !hook[1]!.split('/').includes('..')) {
        webhook = hook[1]!;
      } else {
        throw new Error(`app ${id}: unknown option ${JSON.stringify(option)}; expected client-events, client-events=N (per second) or webhook=/path/under/root.php`);
      }
    }
    if (apps.some((a) => a.id === id)) throw new Error(`app id ${id} is given twice`);
    if (apps.some((a) => a.key === key)) throw new Error(`app key ${key} is given twice`);
    apps.push(Object.freeze({ id, key, secret, clientEventRate, webhook }));
  }
  return apps;
}
