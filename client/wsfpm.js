// wsfpm.js: a websocket that comes back. An ES module, no build step.
//
//   import { connect } from '/.wsfpm/wsfpm.js';
//   const ws = connect('/chat.php');
//   ws.onmessage = (data, channel) => { ... };   // channel: null for the script's own sends
//   ws.onlost = (channel) => reloadState();       // history could not fill the gap
//
// It reconnects after any close it did not ask for (jittered exponential
// backoff), and names, for each channel its script subscribed with history,
// the epoch and last offset it saw (the wsfpm_resume query parameter), so
// the daemon delivers what it missed, in order, before new messages, or says
// that it cannot (docs/protocol.md, "History and resume").

const PREFIX = '{"wsfpm":';

/** Base64 to bytes, for binary channel messages (their envelope is JSON). */
function bytes(b64) {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

export class WsfpmSocket {
  /**
   * @param {string} url the script's URL, http(s) or ws(s), relative to the page
   * @param {{minDelay?: number, maxDelay?: number, protocols?: string|string[]}} [options] ms
   */
  constructor(url, options = {}) {
    this.url = new URL(url, globalThis.location?.href);
    if (this.url.protocol === 'http:') this.url.protocol = 'ws:';
    if (this.url.protocol === 'https:') this.url.protocol = 'wss:';
    this.minDelay = options.minDelay ?? 500;
    this.maxDelay = options.maxDelay ?? 10_000;
    this.protocols = options.protocols;
    /** channel -> {epoch, offset}: where each history channel resumes. */
    this.positions = new Map();
    this.attempt = 0;
    this.closed = false;
    this.ws = null;
    this.onopen = () => {};
    this.onmessage = () => {};
    this.onrecovered = () => {};
    this.onlost = () => {};
    this.onclose = () => {};
    this.#open();
  }

  get connected() {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  /** Sends to the script; false while reconnecting (nothing is queued: a page decides what to resend). */
  send(data) {
    if (!this.connected) return false;
    this.ws.send(data);
    return true;
  }

  /** Closes for good: no reconnect. */
  close(code = 1000, reason = '') {
    this.closed = true;
    clearTimeout(this.timer);
    this.ws?.close(code, reason);
  }

  #resumeUrl() {
    const u = new URL(this.url);
    u.searchParams.delete('wsfpm_resume');
    for (const [channel, p] of this.positions) u.searchParams.append('wsfpm_resume', `${p.epoch}.${p.offset}.${channel}`);
    return u.href;
  }

  #open() {
    const ws = new WebSocket(this.#resumeUrl(), this.protocols);
    this.ws = ws;
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => {
      this.attempt = 0;
      this.onopen();
    };
    ws.onmessage = (event) => {
      if (typeof event.data === 'string' && event.data.startsWith(PREFIX)) this.#envelope(JSON.parse(event.data));
      else this.onmessage(event.data, null);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.onclose(event);
      // 1008: refused by policy (origin, rate, login); retrying would only repeat it.
      if (this.closed || event.code === 1008) return;
      const ceiling = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt++);
      this.timer = setTimeout(() => this.#open(), ceiling / 2 + Math.random() * (ceiling / 2));
    };
  }

  #envelope(e) {
    const known = this.positions.get(e.channel);
    if (e.wsfpm === 'message') {
      if (e.offset !== undefined) {
        // Once only: an offset already seen under this epoch is a repeat.
        if (known && known.epoch === e.epoch && e.offset <= known.offset) return;
        this.positions.set(e.channel, { epoch: e.epoch, offset: e.offset });
        // A new epoch on a live subscription: the history was lost meanwhile (Redis flushed), so a message may be missing.
        if (known && known.epoch !== e.epoch) this.onlost(e.channel);
      }
      this.onmessage(e.binary ? bytes(e.data) : e.data, e.channel, e.offset);
      return;
    }
    this.positions.set(e.channel, { epoch: e.epoch, offset: e.offset });
    if (e.wsfpm === 'recovered') this.onrecovered(e.channel, e.missed);
    else if (e.wsfpm === 'lost') this.onlost(e.channel);
  }
}

/** A WsfpmSocket on `url`; see the class for the options. */
export function connect(url, options) {
  return new WsfpmSocket(url, options);
}
