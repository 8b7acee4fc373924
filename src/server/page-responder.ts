/**
 * One PHP page: a FastCGI request, its input pumped in, its output as a stream.
 */
import { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { type FpmAddress } from '../fastcgi/address.ts';
import { type CgiHead } from '../fastcgi/cgi-headers.ts';
import { FcgiRequest } from '../fastcgi/request.ts';
import { type Config } from '../config.ts';
import { wsfpmError, type WsfpmError } from '../errors.ts';
import { type Log } from '../log.ts';

const MiB = 1024 * 1024;

/**
 * Limits of the page responder. Not configuration (yet): tests lower them,
 * nothing else should need to.
 */
export const pageLimits = {
  /** ms PHP has to send its header block once its input has ended; then 504. */
  headTimeout: 60_000,
  /** Largest chunked request body (no Content-Length), bytes; PHP needs the length up front, so it is spooled first. Then 413. */
  chunkedBodyLimit: 64 * MiB,
  /** A chunked body up to this size is held in memory, a larger one in a temp file (mode 0600). */
  chunkedInMemory: 1 * MiB,
};

/** Why a page got no header block from PHP: the status the client gets, and the log code. */
export interface Failure {
  status: number;
  code: string;
  detail: string;
}

function failure(error: WsfpmError): Failure {
  // Before the header block: 502 (unreachable, protocol, died, bad headers) or 503 (php-fpm overloaded).
  return { status: error.status, code: error.code, detail: error.detail ?? error.message };
}

export class PhpPage {
  /** PHP's header block; rejects with a Failure. */
  readonly head: Promise<CgiHead>;
  /** PHP's body after the header block: when the client reads slowly, pushes fill it and PHP is paused. */
  readonly output: Readable;
  /** A Content-Length PHP declared and that the response will carry; the body is held to it exactly. */
  declaredLength: number | null = null;
  /** The body was cut (PHP died mid-body, or sent less than its Content-Length). */
  broken = false;
  readonly #fcgi: FcgiRequest;
  readonly #log: Log;
  readonly #isHead: boolean;
  readonly #rejectHead: (failure: Failure) => void;
  #source: Readable | null = null;
  #cleanup: () => void = () => {};
  #timer: NodeJS.Timeout | null = null;
  #sent = 0;
  #ended = false;

  constructor(fpm: FpmAddress, params: Array<[string, string]>, isHead: boolean, config: Config, log: Log) {
    this.#log = log;
    this.#isHead = isHead;
    let resolveHead!: (head: CgiHead) => void;
    let rejectHead!: (failure: Failure) => void;
    this.head = new Promise((resolve, reject) => {
      resolveHead = resolve;
      rejectHead = reject;
    });
    this.head.catch(() => {});
    this.#rejectHead = rejectHead;
    this.output = new Readable({
      highWaterMark: config.highWater,
      read: () => this.#fcgi.resumeStdout(),
      destroy: (err, callback) => {
        this.#fcgi.destroy();
        callback(err);
      },
    });
    // Failures are logged where they happen; the response side learns of them through the stream's state.
    this.output.on('error', () => {});
    this.#fcgi = new FcgiRequest(fpm, params, {
      onHead: (head) => {
        this.#clearTimer();
        this.declaredLength = this.#declared(head);
        resolveHead(head);
      },
      onStdout: (chunk) => this.#onStdout(chunk),
      onStderr: (line) => this.#log.warn({ stderr: line }, 'PHP wrote to stderr'),
      onEnd: (error) => this.#onEnd(error),
      onDrain: () => this.#source?.resume(),
    }, { maxHeaderBlock: config.maxHeaderBlock });
  }

  /** Streams `source` (null: no body) into STDIN with backpressure, then ends STDIN and arms the header timeout. */
  feed(source: Readable | null, cleanup: () => void): void {
    this.#cleanup = cleanup;
    const end = (): void => {
      this.#cleanup();
      this.#fcgi.endStdin();
      if (!this.#fcgi.done && !this.#fcgi.head) this.#timer = setTimeout(() => this.#timeout(), pageLimits.headTimeout);
    };
    if (!source) return end();
    this.#source = source;
    source.on('data', (chunk: Buffer) => {
      if (!this.#fcgi.writeStdin(chunk)) source.pause();
    });
    source.once('end', end);
    source.once('error', (err) => {
      this.#log.warn({ detail: err.message }, 'reading the request body failed');
      this.abort();
    });
  }

  /** Ends PHP's request now (the client left). */
  abort(): void {
    this.#clearTimer();
    this.#fcgi.destroy();
    this.#releaseSource();
  }

  #timeout(): void {
    this.#timer = null;
    if (this.#fcgi.head || this.#fcgi.done) return;
    this.#rejectHead({ status: 504, code: 'WSFPM_ERR_PAGE_TIMEOUT', detail: `no header block from PHP within ${pageLimits.headTimeout} ms after its input ended` });
    this.abort();
  }

  /** PHP is done with its input: the client's body is drained into nothing (keep-alive), a spooled one dropped. */
  #releaseSource(): void {
    const source = this.#source;
    if (!source) return;
    if (source instanceof IncomingMessage) source.resume();
    else {
      source.destroy();
      this.#cleanup();
    }
  }

  #onEnd(error: WsfpmError | null): void {
    this.#clearTimer();
    this.#releaseSource();
    if (!this.#fcgi.head) {
      this.#rejectHead(failure(error ?? wsfpmError('WSFPM_ERR_PHP_ENDED')));
      return;
    }
    if (this.output.destroyed || this.#ended) return;
    if (error) {
      this.#log.warn({ code: error.code, detail: error.detail }, 'PHP page ended abnormally; response cut');
      this.#cut();
    } else if (this.declaredLength !== null && this.#sent < this.declaredLength) {
      this.#log.warn({ code: 'WSFPM_ERR_PHP_LENGTH', declared: this.declaredLength, sent: this.#sent }, 'PHP sent less than its Content-Length; response cut');
      this.#cut();
    } else {
      this.#end();
    }
  }

  #declared(head: CgiHead): number | null {
    if (this.#isHead || head.status === 204 || head.status === 304) return null;
    const values = head.headers.filter(([n]) => n.toLowerCase() === 'content-length').map(([, v]) => v);
    if (values.length !== 1 || !/^\d{1,15}$/.test(values[0]!)) return null;
    return Number(values[0]);
  }

  #onStdout(chunk: Buffer): void {
    if (this.#ended || this.output.destroyed) return;
    let part = chunk;
    if (this.declaredLength !== null && part.length > this.declaredLength - this.#sent) {
      this.#log.warn({ code: 'WSFPM_ERR_PHP_LENGTH', declared: this.declaredLength }, 'PHP sent more than its Content-Length; the rest dropped');
      part = part.subarray(0, this.declaredLength - this.#sent);
    }
    this.#sent += part.length;
    if (part.length > 0 && !this.output.push(part)) this.#fcgi.pauseStdout();
    if (this.declaredLength !== null && this.#sent >= this.declaredLength) {
      this.#end();
      this.#fcgi.destroy();
    }
  }

  /** The response cannot be completed. Once headers are out the connection is closed; before, fastify answers 502 (a generic message, nothing of PHP's). */
  #cut(): void {
    this.broken = true;
    this.output.destroy(Object.assign(new Error('PHP ended its response abnormally'), { statusCode: 502 }));
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.output.push(null);
  }

  #clearTimer(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
