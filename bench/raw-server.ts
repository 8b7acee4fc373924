/**
 * The ceiling: a bare `ws` server in a process of its own, doing in plain
 * Node what wsfpm does through php-fpm, with the same ws options as the
 * daemon (no compression, 1 MiB max payload).
 *
 *   /echo     every message back, same type
 *   /hold     sends its pid (as hold.php does), then echoes
 *   /sub      a broadcast subscriber: gets 'ready', then every /pub message
 *   /pub      every message it sends goes to every /sub connection
 *             (one ws.send per subscriber, skipping one with more than 1 MiB
 *             queued, as the daemon's FORWARD delivery does)
 *
 * Plain HTTP on the same port is the site behind wsfpm in the proxy scenario
 * (front mode): GET /page answers 200 with a 32 B body and `x-bench-upstream: 1`.
 *
 * IPC as bench/daemon.ts: `ready`, `stats`, `stop`.
 */
import http from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';

const HIGH_WATER = 1 << 20;
const PAGE = Buffer.alloc(32, 'p');
const server = http.createServer((req, res) => {
  req.resume();
  res.writeHead(req.url?.startsWith('/page') ? 200 : 404, { 'content-type': 'text/plain', 'content-length': String(PAGE.length), 'x-bench-upstream': '1' });
  res.end(PAGE);
});
server.keepAliveTimeout = 60_000;
const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 1 << 20 });
const subscribers = new Set<WebSocket>();

wss.on('connection', (ws, req) => {
  const url = req.url ?? '/';
  ws.on('error', () => ws.terminate());
  if (url.startsWith('/sub')) {
    subscribers.add(ws);
    ws.on('close', () => subscribers.delete(ws));
    ws.send('ready');
    return;
  }
  if (url.startsWith('/pub')) {
    ws.on('message', (data, binary) => {
      for (const s of subscribers) {
        if (s.bufferedAmount <= HIGH_WATER) s.send(data as Buffer, { binary });
      }
    });
    return;
  }
  if (url.startsWith('/hold')) ws.send(String(process.pid));
  ws.on('message', (data, binary) => ws.send(data as Buffer, { binary }));
});

await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
const addr = server.address();
const port = typeof addr === 'object' && addr ? addr.port : 0;

let stopping = false;
function stop(): void {
  if (stopping) return;
  stopping = true;
  for (const ws of wss.clients) ws.terminate();
  server.closeAllConnections();
  wss.close();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 3000).unref();
}

process.on('message', (raw) => {
  const msg = raw as { id: number; cmd: string };
  if (msg.cmd === 'stop') return stop();
  if (msg.cmd === 'stats') {
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    process.send?.({ id: msg.id, connections: wss.clients.size, memory: process.memoryUsage(), gc: Boolean(gc) });
  }
});
process.on('disconnect', stop);
process.on('SIGTERM', stop);
process.send?.({ type: 'ready', port });
