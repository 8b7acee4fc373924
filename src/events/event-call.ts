/**
 * One event of an events-mode connection as one short FastCGI request
 * (docs/protocol.md, "Event requests"): the connection's parameters, the
 * event's body of frames on STDIN, then EOF; PHP's answer is a header block
 * and action frames, taken only once END_REQUEST says the script finished.
 *
 * php-fpm that cannot be reached, or that refuses the request as overloaded,
 * is asked again until the deadline: the script never ran, so nothing is
 * repeated. A request php-fpm took is never retried: the script may have run.
 */
import { type FpmAddress } from '../fastcgi/address.ts';
import { FcgiRequest } from '../fastcgi/request.ts';
import { FrameDecoder, FrameError, type Frame } from '../protocol/frames.ts';
import { wsfpmError, WsfpmError } from '../errors.ts';

const RETRY_MS = 100;
const FATAL = /PHP (?:Fatal|Parse) error/;

export interface EventCallOptions {
  maxMessage: number;
  maxHeaderBlock: number;
  /** ms since the epoch: no answer by then is WSFPM_ERR_EVENT_TIMEOUT. */
  deadline: number;
  onStderr(line: string): void;
}

/** The action frames of a cleanly ended event; throws WsfpmError otherwise. */
export async function callEvent(address: FpmAddress, params: Buffer, body: Buffer[], options: EventCallOptions): Promise<Frame[]> {
  for (;;) {
    try {
      return await attempt(address, params, body, options);
    } catch (err) {
      const retry = err instanceof WsfpmError && (err.code === 'WSFPM_ERR_FPM_UNREACHABLE' || err.code === 'WSFPM_ERR_FPM_BUSY') && Date.now() + RETRY_MS < options.deadline;
      if (!retry) throw err;
      await new Promise((r) => setTimeout(r, RETRY_MS));
    }
  }
}

function attempt(address: FpmAddress, params: Buffer, body: Buffer[], options: EventCallOptions): Promise<Frame[]> {
  return new Promise((resolve, reject) => {
    const frames: Frame[] = [];
    let frameError: FrameError | null = null;
    let fatal = false;
    const decoder = new FrameDecoder(options.maxMessage, (frame) => frames.push(frame));
    const timer = setTimeout(() => {
      timedOut = true;
      req.destroy();
    }, Math.max(0, options.deadline - Date.now()));
    let timedOut = false;
    const req: FcgiRequest = new FcgiRequest(address, params, {
      onHead: () => {},
      onStdout: (chunk) => {
        if (frameError) return;
        try {
          decoder.push(chunk);
        } catch (err) {
          if (!(err instanceof FrameError)) throw err;
          frameError = err;
        }
      },
      onStderr: (line) => {
        if (FATAL.test(line)) fatal = true;
        options.onStderr(line);
      },
      onEnd: (error) => {
        clearTimeout(timer);
        if (timedOut) return reject(wsfpmError('WSFPM_ERR_EVENT_TIMEOUT', `no answer within the event timeout`));
        if (error) return reject(error);
        const status = req.head?.status ?? 0;
        if (status < 200 || status > 299) return reject(wsfpmError('WSFPM_ERR_PHP_DIED', `the event was answered with status ${status}`));
        if (fatal) return reject(wsfpmError('WSFPM_ERR_PHP_DIED', 'PHP reported a fatal error'));
        if (frameError) return reject(wsfpmError('WSFPM_ERR_PHP_FRAME', (frameError as FrameError).message));
        if (!decoder.idle) return reject(wsfpmError('WSFPM_ERR_PHP_FRAME', 'the answer ends inside a frame'));
        resolve(frames);
      },
    }, { maxHeaderBlock: options.maxHeaderBlock });
    if (body.length > 0) req.writeStdin(body);
    req.endStdin();
  });
}
