/**
 * A whole FastCGI request and response in one call, for ordinary page
 * requests (the doctor, tests): body in, header block and body out.
 */
import { type FpmAddress } from './address.ts';
import { type CgiHead } from './cgi-headers.ts';
import { FcgiRequest } from './request.ts';
import { type WsfpmError } from '../errors.ts';

export interface FetchResult {
  head: CgiHead;
  body: Buffer;
  stderr: string[];
}

/** `timeoutMs` (0: none) ends a request PHP has not finished by then, and rejects. */
export function fcgiFetch(address: FpmAddress, params: Record<string, string>, body: Buffer = Buffer.alloc(0), maxHeaderBlock = 32 * 1024, timeoutMs = 0): Promise<FetchResult> {
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | null = null;
    let timedOut = false;
    const chunks: Buffer[] = [];
    const stderr: string[] = [];
    const all = { CONTENT_LENGTH: String(body.length), ...params };
    const req = new FcgiRequest(address, Object.entries(all), {
      onHead() {},
      onStdout(chunk) {
        chunks.push(chunk);
      },
      onStderr(line) {
        stderr.push(line);
      },
      onEnd(error: WsfpmError | null) {
        if (timer) clearTimeout(timer);
        if (timedOut) reject(new Error(`no answer within ${timeoutMs} ms`));
        else if (error || !req.head) reject(error ?? new Error('no header block'));
        else resolve({ head: req.head, body: Buffer.concat(chunks), stderr });
      },
    }, { maxHeaderBlock });
    if (timeoutMs > 0) {
      timer = setTimeout(() => {
        timedOut = true;
        req.destroy();
      }, timeoutMs);
    }
    req.writeStdin(body);
    req.endStdin();
  });
}
