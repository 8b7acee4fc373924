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

export function fcgiFetch(address: FpmAddress, params: Record<string, string>, body: Buffer = Buffer.alloc(0), maxHeaderBlock = 32 * 1024): Promise<FetchResult> {
  return new Promise((resolve, reject) => {
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
        if (error || !req.head) reject(error ?? new Error('no header block'));
        else resolve({ head: req.head, body: Buffer.concat(chunks), stderr });
      },
    }, { maxHeaderBlock });
    req.writeStdin(body);
    req.endStdin();
  });
}
