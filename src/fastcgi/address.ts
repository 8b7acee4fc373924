/** php-fpm addresses as users write them: `unix:/run/php/php-fpm.sock` or `tcp:127.0.0.1:9000`. */

export type FpmAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/** Returns the address, or a string saying what is wrong with it. `listen`: an address to listen on, where port 0 means any. */
export function parseFpmAddress(text: string, listen = false): FpmAddress | string {
  if (text.startsWith('unix:')) {
    const path = text.slice(5);
    if (!path.startsWith('/')) return 'a unix socket path must be absolute (unix:/run/php/php-fpm.sock)';
    return { kind: 'unix', path };
  }
  if (text.startsWith('/')) return { kind: 'unix', path: text };
  const m = /^(?:tcp:)?(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d{1,5})$/.exec(text);
  if (m) {
    const port = Number(m[2]);
    const min = listen ? 0 : 1;
    if (port < min || port > 65535) return `port ${port} is out of range ${min}-65535`;
    const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : m[1]!;
    return { kind: 'tcp', host, port };
  }
  return 'expected unix:/path/to/php-fpm.sock or tcp:HOST:PORT';
}

export function formatFpmAddress(a: FpmAddress): string {
  return a.kind === 'unix' ? `unix:${a.path}` : `tcp:${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}
