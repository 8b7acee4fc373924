<?php

declare(strict_types=1);

namespace Wsfpm;

/**
 * One websocket connection, held by the php-fpm request that accept()ed it.
 *
 * Frames (docs/protocol.md) travel on the side channel, a unix socket of the
 * connection's own, when the daemon offers one and it can be reached; else on
 * the request's STDIN and STDOUT. Either way, after accept() nothing else
 * may be echoed: use send().
 */
final class Connection
{
    public const PROTOCOL_VERSION = Handshake::PROTOCOL_VERSION;

    private bool $closed = false;

    private ?int $closeCode = null;

    private string $closeReason = '';

    private int $bytesIn = 0;

    /** @var array<string, bool> channel => FORWARD, as this script asked the daemon */
    private array $subscriptions = [];

    /** The timer interval asked for with every(), ms; 0: no timer. */
    private int $interval = 0;

    /** On the side channel: bytes read but not yet consumed, from $bufAt on. */
    private string $buf = '';

    private int $bufAt = 0;

    /** Without the side channel: the number of the last WAKE asked for by receive($timeout). */
    private int $wakeSeq = 0;

    /**
     * @param resource $in
     * @param resource $out
     */
    private function __construct(
        private $in,
        private $out,
        private readonly string $id,
        private readonly int $maxMessage,
        private readonly bool $underFpm,
        private readonly ?InputSpool $spool,
        /** @var resource|null the side channel; null: frames go through $in and $out */
        private $channel = null,
    ) {
    }

    /**
     * Accept the upgrade: after this the request is a websocket.
     *
     * @param array<string, string|list<string>> $headers sent with the 101, e.g. ['Sec-WebSocket-Protocol' => 'chat.v1'];
     *        the daemon forwards Sec-WebSocket-Protocol, Set-Cookie and X-* only
     * @throws Exception when not running under wsfpm, on a protocol mismatch, or if output already started
     */
    public static function accept(array $headers = []): self
    {
        $event = (string) ($_SERVER['WSFPM_EVENT'] ?? 'open');
        if ($event !== 'open') {
            throw new Exception(
                "Connection::accept() in a '$event' event: this connection was accepted in events mode, "
                . 'so every later request of it is one event; handle it with Wsfpm\\Event::receive() (or Server::events())'
            );
        }
        Handshake::assertProtocol('Connection::accept()');
        Handshake::assertCanRespond();
        $lines = Handshake::headerLines($headers);
        Handshake::prepareOutput();
        Handshake::markAnswered();

        // max_execution_time counts CPU time, which a busy connection eventually uses up.
        @set_time_limit(0);
        // The session lock would block every page request of this user for as long as the socket is open.
        if (function_exists('session_status') && session_status() === PHP_SESSION_ACTIVE) {
            session_write_close();
        }

        // Before the 101: once the daemon sees it, every frame to this script takes the path chosen here.
        $channel = SideChannel::open($_SERVER);

        Handshake::sendHead(101, $lines);

        $in = fopen('php://input', 'rb');
        $out = fopen('php://output', 'wb');
        if ($in === false || $out === false) {
            throw new Exception('cannot open php://input or php://output');
        }
        // With a read buffer, fread() waits for 8 KiB to arrive: small messages would stall.
        stream_set_read_buffer($in, 0);

        $conn = new self(
            $in,
            $out,
            (string) ($_SERVER['WSFPM_CONNECTION_ID'] ?? ''),
            Handshake::limit($_SERVER, 'WSFPM_MAX_MESSAGE', Frame::DEFAULT_MAX_MESSAGE),
            true,
            new InputSpool(),
            $channel,
        );
        register_shutdown_function(static function () use ($conn): void {
            // Registered again from inside shutdown so it runs after the script's own
            // shutdown functions, which may still want to send or close.
            register_shutdown_function(static fn () => $conn->shutdown());
        });

        // PHP sends its headers only together with the first body byte, so this frame is what delivers the 101.
        // It always goes on STDOUT: that is where the daemon waits for the answer.
        $conn->writeTo($out, Frame::encode(Frame::OPEN), true);
        return $conn;
    }

    /**
     * Refuse the upgrade with an HTTP response, then end the script.
     *
     * @param array<string, string|list<string>> $headers
     */
    public static function reject(int $status, string $body = '', array $headers = []): never
    {
        Handshake::reject($status, $body, $headers);
    }

    /**
     * Wrap existing streams, for testing the codec without php-fpm.
     * No headers, no OPEN frame, no shutdown handling, no spool trimming.
     * With $channel, frames go both ways on it, as on the side channel.
     *
     * @internal
     * @param resource $in
     * @param resource $out
     * @param resource|null $channel
     */
    public static function fromStreams($in, $out, string $id = 'test', int $maxMessage = Frame::DEFAULT_MAX_MESSAGE, $channel = null): self
    {
        if (!is_resource($in) || !is_resource($out) || ($channel !== null && !is_resource($channel))) {
            throw new Exception('fromStreams() needs stream resources');
        }
        return new self($in, $out, $id, $maxMessage, false, null, $channel);
    }

    /**
     * The connection's stream, to stream_select() on together with the
     * script's own sockets: when it is readable, call receive(0) until it
     * returns false (messages already read are buffered, select() cannot see
     * them). Only on the side channel; without it there is no stream PHP can
     * select on (php://input is not a socket).
     *
     * @return resource
     * @throws Exception without the side channel (see usesSideChannel())
     */
    public function stream()
    {
        if ($this->channel === null) {
            throw new Exception(
                'stream() needs the side channel, which this connection does not use '
                . '(wsfpm --side-channel off, or the daemon\'s socket cannot be reached: see the error log); '
                . 'use receive($timeout) instead'
            );
        }
        return $this->channel;
    }

    /** Whether frames travel on the side channel (else on STDIN/STDOUT). */
    public function usesSideChannel(): bool
    {
        return $this->channel !== null;
    }

    /**
     * Wait for the next message. Returns null once the connection is over
     * (client closed, daemon went away, or PHP closed it; see closeCode()),
     * and false when $timeout seconds passed without one (null: wait as long
     * as it takes; 0: only what has already arrived).
     *
     * Besides the client's messages this returns channel messages
     * ($msg->channel set) once the script subscribe()d without forwarding, and
     * ticks ($msg->tick) once it asked for a timer with every(); never otherwise.
     */
    public function receive(?float $timeout = null): Message|false|null
    {
        if ($timeout !== null && $timeout < 0) {
            throw new Exception('receive(): the timeout must be null or at least 0 seconds');
        }
        $deadline = $timeout === null ? null : microtime(true) + $timeout;
        $first = true;
        while (!$this->closed) {
            // On the channel readiness is asked again after each frame skipped, so that a
            // dropped tick or channel frame does not turn the wait into a blocking read.
            // Without it one WAKE covers the whole call.
            if ($deadline !== null && ($first || $this->channel !== null) && !$this->ready(max(0.0, $deadline - microtime(true)))) {
                return false;
            }
            $first = false;
            $header = $this->read(Frame::HEADER_SIZE);
            if ($header === null) {
                return $this->lost();
            }
            [$type, $length] = Frame::decodeHeader($header);
            // A CHANNEL frame carries up to a full message plus its channel name.
            $limit = $type === Frame::CHANNEL ? $this->maxMessage + Frame::MAX_CHANNEL_OVERHEAD : $this->maxMessage;
            if ($length > $limit) {
                // The daemon closes oversized client messages itself (1009), so this is a
                // broken peer; skipping would mean trusting a length we already doubt.
                $this->close(1002, 'frame too large');
                return null;
            }
            if ($type === Frame::TEXT || $type === Frame::BINARY) {
                $payload = $this->read($length);
                return $payload === null ? $this->lost() : new Message($payload, $type === Frame::BINARY);
            }
            if ($type === Frame::CLOSE) {
                $payload = $this->read($length);
                if ($payload === null) {
                    return $this->lost();
                }
                [$this->closeCode, $this->closeReason] = Frame::parseClosePayload($payload);
                $this->closed = true;
                return null;
            }
            if ($type === Frame::CHANNEL) {
                $payload = $this->read($length);
                if ($payload === null) {
                    return $this->lost();
                }
                try {
                    [$channel, $data, $binary] = Frame::parseChannelPayload($payload);
                } catch (Exception) {
                    $this->close(1002, 'malformed frame');
                    return null;
                }
                // One still in flight after unsubscribe() (or for a forwarded channel) is not what the script wants.
                if (($this->subscriptions[$channel] ?? true) === false) {
                    return new Message($data, $binary, $channel);
                }
                continue;
            }
            if ($type === Frame::WAKE) {
                $payload = $this->read($length);
                if ($payload === null) {
                    return $this->lost();
                }
                // Only the wake of this receive() call; earlier ones arrive after the message they waited for.
                if ($length === 4 && unpack('N', $payload)[1] === $this->wakeSeq) {
                    return false;
                }
                continue;
            }
            if ($type === Frame::TICK) {
                if (!$this->skip($length)) {
                    return $this->lost();
                }
                // A tick still in flight after every(0) is dropped.
                if ($this->interval > 0) {
                    return new Message('', false, null, true);
                }
                continue;
            }
            // Types we do not know are skipped, as the protocol asks.
            if (!$this->skip($length)) {
                return $this->lost();
            }
        }
        return null;
    }

    /**
     * Send one message. Text must be valid UTF-8: browsers drop the connection otherwise.
     *
     * @throws Exception when the connection is closed or the message is invalid or too large
     */
    public function send(string $data, bool $binary = false): void
    {
        if ($this->closed) {
            throw new Exception('cannot send: the connection is closed');
        }
        Frame::assertMessage($data, $binary, $this->maxMessage, 'send');
        $this->write(Frame::encode($binary ? Frame::BINARY : Frame::TEXT, $data));
    }

    /**
     * Close the connection. The reason is cut to 123 bytes on a character boundary.
     * Does nothing if already closed, by either side.
     *
     * @throws Exception for a code that may not be sent or a reason that is not UTF-8
     */
    public function close(int $code = 1000, string $reason = ''): void
    {
        Frame::assertClose($code, $reason);
        if ($this->closed) {
            return;
        }
        try {
            $this->sendClose($code, $reason);
        } catch (Exception) {
            // The peer is already gone, which is what closing wanted.
        }
    }

    /**
     * Subscribe to a channel. Without $forward, its messages reach this script
     * through receive() with $msg->channel set. With $forward, the daemon sends
     * them straight to this connection's client (as text or binary messages)
     * and the script never sees them: the cheapest way to fan out a room.
     * Subscribing again to the same channel changes $forward.
     * With $history (and $forward) the channel keeps its last messages and
     * the client gets each in a JSON envelope with its offset, so the browser
     * module (client/wsfpm.js) resumes after a reconnect without losing one.
     *
     * @throws Exception for an invalid channel name or a closed connection
     */
    public function subscribe(string $channel, bool $forward = false, bool $history = false): void
    {
        $this->writeFrame(Frame::SUBSCRIBE, Frame::subscribePayload($channel, $forward, $history));
        $this->subscriptions[$channel] = $forward;
    }

    /**
     * Stop receiving a channel's messages. Does nothing for a channel this
     * connection is not subscribed to.
     *
     * @throws Exception for an invalid channel name or a closed connection
     */
    public function unsubscribe(string $channel): void
    {
        $payload = Frame::unsubscribePayload($channel);
        if (!array_key_exists($channel, $this->subscriptions)) {
            return;
        }
        unset($this->subscriptions[$channel]);
        $this->writeFrame(Frame::UNSUBSCRIBE, $payload);
    }

    /**
     * Channels this connection subscribed to.
     *
     * @return array<string, bool> channel => whether it is forwarded to the client
     */
    public function subscriptions(): array
    {
        return $this->subscriptions;
    }

    /**
     * Publish a message to every connection subscribed to $channel, on this
     * daemon (and its cluster). This connection gets it too if subscribed,
     * unless $excludeSelf. Nobody needs to be subscribed: a message to an
     * empty channel is simply dropped.
     *
     * @throws Exception for an invalid channel, invalid UTF-8 text, a message
     *         too large (WSFPM_MAX_MESSAGE, counting the channel name), or a closed connection
     */
    public function publish(string $channel, string $data, bool $binary = false, bool $excludeSelf = false): void
    {
        Frame::assertMessage($data, $binary, $this->maxMessage, 'publish');
        $this->writeFrame(Frame::PUBLISH, Frame::publishPayload($channel, $data, $binary, $excludeSelf));
    }

    /**
     * Send a message to the client of another connection (or this one), by
     * its id ($ws->id() over there). Nothing happens if that connection is gone.
     *
     * @throws Exception for an invalid id, invalid UTF-8 text, a message too large, or a closed connection
     */
    public function sendTo(string $connectionId, string $data, bool $binary = false): void
    {
        Frame::assertMessage($data, $binary, $this->maxMessage, 'sendTo');
        $this->writeFrame(Frame::SEND, Frame::sendPayload($connectionId, $data, $binary));
    }

    /**
     * Ask for a tick every $ms milliseconds from now on: receive() returns a
     * Message with $tick true. 0 stops the timer. There is one timer per
     * connection; calling again replaces it. Ticks do not pile up while the
     * script is busy: missed ones are skipped.
     *
     * @throws Exception for an interval that is neither 0 nor at least 10 ms, or a closed connection
     */
    public function every(int $ms): void
    {
        $this->writeFrame(Frame::TIMER, Frame::timerPayload($ms));
        $this->interval = $ms;
    }

    /** WSFPM_CONNECTION_ID: 32 hex characters, unique per connection. */
    public function id(): string
    {
        return $this->id;
    }

    /**
     * How the connection ended: the client's code (1005 if it gave none, 1006 if it
     * vanished), or PHP's own code if PHP closed first. Null while open.
     */
    public function closeCode(): ?int
    {
        return $this->closeCode;
    }

    /** The reason that goes with closeCode(); '' while open. */
    public function closeReason(): string
    {
        return $this->closeReason;
    }

    /**
     * Whether a frame can be read now or within $timeout seconds. On the side
     * channel, select() answers; without it, php://input cannot be waited on
     * with a timeout, so the daemon is asked to send a WAKE frame after it
     * (and true is returned: receive() returns false when that WAKE comes first).
     */
    private function ready(float $timeout): bool
    {
        if ($this->channel === null) {
            if ($this->underFpm) {
                $this->wakeSeq = ($this->wakeSeq + 1) & 0xFFFFFFFF;
                try {
                    $this->write(Frame::encode(Frame::WAKE, Frame::wakePayload((int) ceil($timeout * 1000), $this->wakeSeq)));
                } catch (Exception) {
                    // The daemon is gone; the read that follows sees the end.
                }
            }
            // (fromStreams() without a channel: there is no daemon to wake us; the read blocks.)
            return true;
        }
        if (strlen($this->buf) - $this->bufAt >= Frame::HEADER_SIZE) {
            return true;
        }
        $read = [$this->channel];
        $none = null;
        $seconds = (int) floor($timeout);
        $n = @stream_select($read, $none, $none, $seconds, (int) (($timeout - $seconds) * 1e6));
        // An interrupted select (a signal) counts as a timeout: the caller asked to be back by then.
        return $n !== false && $n > 0;
    }

    /** A channel, send or timer frame; the daemon's frame limit counts the whole payload. */
    private function writeFrame(int $type, string $payload): void
    {
        if ($this->closed) {
            throw new Exception('cannot talk to the daemon: the connection is closed');
        }
        Frame::assertFits($payload, $this->maxMessage);
        $this->write(Frame::encode($type, $payload));
    }

    private function sendClose(int $code, string $reason): void
    {
        $reason = Frame::truncateUtf8($reason, Frame::MAX_CLOSE_REASON);
        // Marked first: if the write fails we must not try another CLOSE later.
        $this->closed = true;
        $this->closeCode = $code;
        $this->closeReason = $reason;
        $this->write(Frame::encode(Frame::CLOSE, Frame::closePayload($code, $reason)));
    }

    /** Runs last at script end; see accept(). */
    private function shutdown(): void
    {
        if (Handshake::diedOfFatal() && !$this->closed) {
            // Half-rendered output of whatever died would corrupt the frame stream.
            Handshake::dropOutputBuffers();
            try {
                // Never the error text: it can hold paths, queries or secrets, and the client is untrusted.
                $this->sendClose(1011, 'internal error');
            } catch (\Throwable) {
                // Nothing left to tell.
            }
        }
        // Closed before the request ends, so the daemon has read every frame by the time it sees the end.
        if ($this->channel !== null) {
            @fclose($this->channel);
            $this->channel = null;
            $this->closed = true;
        }
        // Otherwise php-fpm drains STDIN before ending the request, and the daemon only ends
        // STDIN after END_REQUEST: the worker would stay busy until the daemon's grace timeout.
        if (function_exists('fastcgi_finish_request')) {
            fastcgi_finish_request();
        }
    }

    /** Exactly $length bytes, or null at end of input. fread() may return less than asked. */
    private function read(int $length): ?string
    {
        if ($this->channel !== null) {
            return $this->readChannel($length);
        }
        $data = '';
        while (($missing = $length - strlen($data)) > 0) {
            $chunk = fread($this->in, $missing);
            if ($chunk === false || $chunk === '') {
                return null;
            }
            $data .= $chunk;
            $this->consumed(strlen($chunk));
        }
        return $data;
    }

    /** Reads as much as one recv() gives (several frames when they queue), and hands out $length bytes of it. */
    private function readChannel(int $length): ?string
    {
        while (strlen($this->buf) - $this->bufAt < $length) {
            $chunk = @fread($this->channel, max(65536, $length - (strlen($this->buf) - $this->bufAt)));
            if ($chunk === false || $chunk === '') {
                return null;
            }
            if ($this->bufAt > 0) {
                $this->buf = substr($this->buf, $this->bufAt);
                $this->bufAt = 0;
            }
            $this->buf .= $chunk;
        }
        if ($this->bufAt === 0 && strlen($this->buf) === $length) {
            $data = $this->buf;
            $this->buf = '';
            return $data;
        }
        $data = substr($this->buf, $this->bufAt, $length);
        $this->bufAt += $length;
        if ($this->bufAt === strlen($this->buf)) {
            $this->buf = '';
            $this->bufAt = 0;
        }
        return $data;
    }

    private function skip(int $length): bool
    {
        while ($length > 0) {
            $chunk = $this->read(min($length, 65536));
            if ($chunk === null) {
                return false;
            }
            $length -= strlen($chunk);
        }
        return true;
    }

    private function consumed(int $bytes): void
    {
        $this->bytesIn += $bytes;
        $this->spool?->consumed($this->bytesIn);
    }

    /** The daemon went away without a CLOSE frame. */
    private function lost(): ?Message
    {
        $this->closed = true;
        $this->closeCode ??= Frame::ABNORMAL;
        return null;
    }

    private function write(string $bytes): void
    {
        if ($this->channel !== null) {
            $this->writeTo($this->channel, $bytes, false);
            return;
        }
        $this->writeTo($this->out, $bytes, $this->underFpm);
    }

    /**
     * @param resource $stream
     * @param bool $flushFpm push php-fpm's own output buffer too (STDOUT under php-fpm)
     */
    private function writeTo($stream, string $bytes, bool $flushFpm): void
    {
        $written = 0;
        $total = strlen($bytes);
        while ($written < $total) {
            $n = @fwrite($stream, $written === 0 ? $bytes : substr($bytes, $written));
            if ($n === false || $n === 0) {
                $this->closed = true;
                $this->closeCode ??= Frame::ABNORMAL;
                throw new Exception('writing to the daemon failed: the connection is gone');
            }
            $written += $n;
        }
        if ($stream === $this->channel) {
            return;
        }
        fflush($stream);
        if ($flushFpm) {
            // Pushes php-fpm's own buffer to the daemon now rather than at 8 KiB or script end.
            flush();
        }
    }
}
