/**
 * One FastCGI request on its own socket to php-fpm. php-fpm does not
 * multiplex and FCGI_KEEP_CONN pins the worker between requests, so each
 * request owns a fresh connection and the socket's end is the request's end.
 *
 * STDIN is a stream the caller writes with backpressure (`writeStdin` returns
 * false when the socket buffer is full; wait for `onDrain`). STDOUT is parsed
 * as a CGI header block, then handed on as raw bytes; `pauseStdout` stops
 * reading from php-fpm, which in turn blocks PHP's writes.
 */
import net from 'node:net';
import { type FpmAddress } from './address.ts';
import { CgiHeaderError, CgiHeaderParser, type CgiHead } from './cgi-headers.ts';
import { FcgiDecodeError, RecordDecoder, type FcgiRecord } from './decoder.ts';
import { encodeBeginRequest, encodePairs, endOfStream, RecordType, streamRecords, streamRecordsOf } from './records.ts';
import { wsfpmError, type WsfpmError } from '../errors.ts';

const REQUEST_ID = 1;
/** STDOUT is PHP's byte stream: its records' content is passed on in pieces, never gathered. */
const STREAMED: ReadonlySet<number> = new Set([RecordType.Stdout]);
const MAX_STDERR_LINE = 8 * 1024;

export interface RequestHandlers {
  /** PHP's header block arrived. */
  onHead(head: CgiHead): void;
  /** Body bytes after the header block. */
  onStdout(chunk: Buffer): void;
  /** One line PHP wrote to STDERR (warnings, error_log()). */
  onStderr(line: string): void;
  /** The request is over. `error` is set when it did not end with END_REQUEST. */
  onEnd(error: WsfpmError | null): void;
  /** The socket accepts STDIN again after writeStdin returned false. */
  onDrain?(): void;
}

export interface RequestOptions {
  maxHeaderBlock: number;
}

export class FcgiRequest {
  readonly #socket: net.Socket;
  readonly #handlers: RequestHandlers;
  readonly #decoder: RecordDecoder;
  readonly #headParser: CgiHeaderParser;
  #head: CgiHead | null = null;
  #stderrTail = '';
  #stdinEnded = false;
  #connected = false;
  #done = false;

  /** `params` may come encoded already (encodePairs): an events-mode connection replays the same ones for every event. */
  constructor(address: FpmAddress, params: Iterable<readonly [string, string]> | Buffer, handlers: RequestHandlers, options: RequestOptions) {
    this.#handlers = handlers;
    this.#headParser = new CgiHeaderParser(options.maxHeaderBlock);
    this.#decoder = new RecordDecoder((record) => this.#onRecord(record), {
      types: STREAMED,
      onPiece: (_type, requestId, piece) => {
        if (this.#done) return;
        if (requestId !== REQUEST_ID) throw new FcgiDecodeError(`record for unknown request id ${requestId}`);
        this.#onStdout(piece);
      },
    });
    this.#socket = address.kind === 'unix' ? net.connect({ path: address.path }) : net.connect({ host: address.host, port: address.port, noDelay: true });
    this.#socket.on('connect', () => {
      this.#connected = true;
    });
    this.#socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    this.#socket.on('drain', () => this.#handlers.onDrain?.());
    this.#socket.on('error', (err: NodeJS.ErrnoException) => this.#onSocketError(err));
    // The error is built only when it is one: every request's socket closes, and an Error captures a stack.
    this.#socket.on('close', () => this.#done || this.#finish(wsfpmError('WSFPM_ERR_PHP_DIED', 'php-fpm closed the connection without END_REQUEST')));
    // Written before connect: net buffers it, and it reaches php-fpm as one burst.
    const paramBytes = Buffer.isBuffer(params) ? params : encodePairs(params);
    this.#socket.cork();
    this.#socket.write(encodeBeginRequest(REQUEST_ID));
    for (const b of streamRecords(RecordType.Params, REQUEST_ID, paramBytes)) this.#socket.write(b);
    this.#socket.write(endOfStream(RecordType.Params, REQUEST_ID));
    this.#socket.uncork();
  }

  get head(): CgiHead | null {
    return this.#head;
  }

  get done(): boolean {
    return this.#done;
  }

  /**
   * Streams bytes to PHP's php://input, the parts (a frame's header and
   * payload) in the same records. Writes of one tick leave in one writev.
   * Returns false when the caller should wait for onDrain.
   */
  writeStdin(data: Buffer | Buffer[]): boolean {
    if (this.#done || this.#stdinEnded) return true;
    const parts = Array.isArray(data) ? data : [data];
    // streamRecordsOf never makes an empty STDIN record (that would mean EOF).
    const records = streamRecordsOf(RecordType.Stdin, REQUEST_ID, parts);
    if (records.length === 0) return !this.#socket.writableNeedDrain;
    this.#corkForTick();
    let ok = true;
    for (const b of records) ok = this.#socket.write(b);
    return ok && !this.#socket.writableNeedDrain;
  }

  #corked = false;

  #corkForTick(): void {
    if (this.#corked) return;
    this.#corked = true;
    this.#socket.cork();
    process.nextTick(() => {
      this.#corked = false;
      this.#socket.uncork();
    });
  }

  /** Bytes queued toward php-fpm and not yet written to the socket. */
  get stdinBacklog(): number {
    return this.#socket.writableLength;
  }

  /** Sends EOF on STDIN: PHP's next read past the buffered bytes returns ''. */
  endStdin(): void {
    if (this.#done || this.#stdinEnded) return;
    this.#stdinEnded = true;
    this.#socket.write(endOfStream(RecordType.Stdin, REQUEST_ID));
  }

  pauseStdout(): void {
    this.#socket.pause();
  }

  resumeStdout(): void {
    this.#socket.resume();
  }

  /** Ends the request now: PHP sees '' at its next read and is aborted at its next write. */
  destroy(): void {
    if (this.#done) return;
    this.#finish(null);
  }

  #onData(chunk: Buffer): void {
    if (this.#done) return;
    try {
      this.#decoder.push(chunk);
    } catch (err) {
      if (err instanceof FcgiDecodeError || err instanceof CgiHeaderError) {
        const code = err instanceof CgiHeaderError ? 'WSFPM_ERR_PHP_HEADERS' : 'WSFPM_ERR_FPM_PROTOCOL';
        this.#finish(wsfpmError(code, err.message));
        return;
      }
      // A bug in a handler must not take the daemon down with it; it ends this request only.
      this.#finish(wsfpmError('WSFPM_ERR_PHP_DIED', `internal error: ${(err as Error)?.message ?? String(err)}`, err));
    }
  }

  #onRecord(record: FcgiRecord): void {
    if (this.#done) return;
    if (record.requestId !== REQUEST_ID) throw new FcgiDecodeError(`record for unknown request id ${record.requestId}`);
    switch (record.type) {
      case RecordType.Stdout:
        if (record.content.length > 0) this.#onStdout(record.content);
        break;
      case RecordType.Stderr:
        this.#onStderrBytes(record.content);
        break;
      case RecordType.EndRequest:
        this.#onEndRequest(record.content);
        break;
      default:
        throw new FcgiDecodeError(`unexpected record type ${record.type}`);
    }
  }

  #onStdout(content: Buffer): void {
    if (this.#head) {
      this.#handlers.onStdout(content);
      return;
    }
    const parsed = this.#headParser.push(content);
    if (!parsed) return;
    this.#head = parsed.head;
    this.#handlers.onHead(parsed.head);
    if (parsed.rest.length > 0 && !this.#done) this.#handlers.onStdout(parsed.rest);
  }

  #onStderrBytes(content: Buffer): void {
    let text = this.#stderrTail + content.toString('utf8');
    let nl: number;
    while ((nl = text.indexOf('\n')) !== -1) {
      const line = text.slice(0, nl).replace(/\r$/, '');
      if (line) this.#handlers.onStderr(line);
      text = text.slice(nl + 1);
    }
    if (text.length > MAX_STDERR_LINE) {
      this.#handlers.onStderr(text.slice(0, MAX_STDERR_LINE) + ' [cut]');
      text = '';
    }
    this.#stderrTail = text;
  }

  #onEndRequest(content: Buffer): void {
    if (content.length < 8) throw new FcgiDecodeError('END_REQUEST body shorter than 8 bytes');
    const protocolStatus = content[4];
    if (protocolStatus !== 0) {
      // CANT_MPX_CONN / OVERLOADED / UNKNOWN_ROLE: php-fpm refused the request.
      this.#finish(wsfpmError(protocolStatus === 2 ? 'WSFPM_ERR_FPM_BUSY' : 'WSFPM_ERR_FPM_PROTOCOL', `END_REQUEST protocol status ${protocolStatus}`));
      return;
    }
    if (!this.#head) {
      this.#finish(wsfpmError('WSFPM_ERR_PHP_ENDED', 'END_REQUEST before any header block'));
      return;
    }
    this.#finish(null);
  }

  #onSocketError(err: NodeJS.ErrnoException): void {
    if (this.#done) return;
    if (!this.#connected) {
      const busy = err.code === 'EAGAIN' || err.code === 'ETIMEDOUT';
      this.#finish(wsfpmError(busy ? 'WSFPM_ERR_FPM_BUSY' : 'WSFPM_ERR_FPM_UNREACHABLE', `${err.code ?? 'error'}: ${err.message}`, err));
      return;
    }
    this.#finish(wsfpmError('WSFPM_ERR_PHP_DIED', `${err.code ?? 'error'}: ${err.message}`, err));
  }

  #finish(error: WsfpmError | null): void {
    if (this.#done) return;
    this.#done = true;
    if (this.#stderrTail) {
      this.#handlers.onStderr(this.#stderrTail);
      this.#stderrTail = '';
    }
    this.#socket.destroy();
    this.#handlers.onEnd(error);
  }
}
