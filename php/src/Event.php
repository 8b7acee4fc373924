<?php

declare(strict_types=1);

namespace Wsfpm;

/**
 * One event of an events-mode connection (docs/protocol.md, "Events mode"):
 * the daemon holds the websocket and runs the script once per event, each
 * time as a short ordinary request, so no php-fpm worker waits between
 * events. $type says which event this request carries:
 *
 * - 'open': the upgrade. accept() chooses events mode (or reject() refuses);
 * - 'message': a message from the client, or ($channel set) one published on
 *   a channel subscribed without forwarding;
 * - 'close': the client left (closeCode()); nothing reaches it any more.
 *
 * Calls are buffered and written in one go when the script ends, and only
 * if it ends cleanly: after a fatal error or an uncaught exception nothing
 * of this event applies, and the daemon closes the client with 1011.
 */
final class Event
{
    /** @var list<self>|null the events of this request, once parsed */
    private static ?array $current = null;

    private static bool $warnedBatch = false;

    private function __construct(
        private readonly EventResponse $response,
        /** 'open', 'message' or 'close' */
        public readonly string $type,
        /** The message; '' in open and close events. */
        public readonly string $data = '',
        public readonly bool $binary = false,
        /** The channel a message was published on; null for the client's own messages. */
        public readonly ?string $channel = null,
        private readonly ?int $closeCode = null,
        private readonly string $closeReason = '',
    ) {
    }

    /**
     * The event this request carries. A message event accepted with a batch
     * above 1 may carry several messages: use receiveAll() for those.
     *
     * @throws Exception outside a request of the wsfpm daemon, or for output already sent
     */
    public static function receive(): self
    {
        $all = self::receiveAll();
        if (count($all) > 1 && !self::$warnedBatch) {
            self::$warnedBatch = true;
            error_log(sprintf('wsfpm: Event::receive() handed over the first of %d messages this event carries; use Event::receiveAll()', count($all)));
        }
        return $all[0];
    }

    /**
     * Every event this request carries, in the order the daemon received
     * them: one for open and close, 1 to the accepted batch for message.
     *
     * @return non-empty-list<self>
     */
    public static function receiveAll(): array
    {
        return self::$current ??= self::fromRequest();
    }

    /**
     * Events from given streams and parameters, for testing without php-fpm:
     * no headers, no output buffers, no shutdown function; finish() writes
     * the response to $out.
     *
     * @internal
     * @param resource $in the event's body
     * @param resource $out
     * @param array<mixed> $server as $_SERVER would be
     * @return non-empty-list<self>
     */
    public static function fromStreams($in, $out, array $server): array
    {
        if (!is_resource($in) || !is_resource($out)) {
            throw new Exception('fromStreams() needs two stream resources');
        }
        return self::parse($server, $in, $out, false);
    }

    /**
     * Events mode: the request ends at script end, the websocket stays open
     * in the daemon, and every later event is a request of its own.
     * Only in the open event.
     *
     * @param array<string, string|list<string>> $headers sent with the 101, as for Connection::accept()
     * @param int $batch the most queued client messages one message event may carry (1-256)
     * @throws Exception outside the open event, twice, for bad headers or batch, or if output already started
     */
    public function accept(array $headers = [], int $batch = 1): void
    {
        $this->response->accept($headers, $batch);
    }

    /**
     * Refuse the upgrade with an HTTP response and end the script; only in the open event.
     *
     * @param array<string, string|list<string>> $headers
     */
    public function reject(int $status, string $body = '', array $headers = []): never
    {
        $this->response->reject($status, $body, $headers);
    }

    /** Whether accept() was called (in the open event). */
    public function accepted(): bool
    {
        return $this->response->accepted();
    }

    /** WSFPM_CONNECTION_ID: 32 hex characters, the same in every event of a connection. */
    public function id(): string
    {
        return $this->response->id;
    }

    /**
     * The connection's meta: what setMeta() last stored, in this event or an
     * earlier one; [] when none was.
     *
     * @return array<mixed>
     */
    public function meta(): array
    {
        return $this->response->meta();
    }

    /**
     * Replace the connection's meta, handed to every later event: a few ids
     * and counters, as JSON of at most WSFPM_MAX_META bytes (4 KiB by
     * default). [] clears it.
     *
     * @param array<mixed> $meta
     * @throws Exception for what JSON cannot hold or more than WSFPM_MAX_META bytes of it
     */
    public function setMeta(array $meta): void
    {
        $this->response->setMeta($meta);
    }

    /**
     * A message to this connection's client. Text must be valid UTF-8.
     *
     * @throws Exception for invalid UTF-8 or more than WSFPM_MAX_MESSAGE bytes
     */
    public function send(string $data, bool $binary = false): void
    {
        Frame::assertMessage($data, $binary, $this->response->maxMessage, 'send');
        $this->response->queue($binary ? Frame::BINARY : Frame::TEXT, $data, true);
    }

    /** @see Connection::publish() */
    public function publish(string $channel, string $data, bool $binary = false, bool $excludeSelf = false): void
    {
        Frame::assertMessage($data, $binary, $this->response->maxMessage, 'publish');
        $this->response->queue(Frame::PUBLISH, Frame::publishPayload($channel, $data, $binary, $excludeSelf), false);
    }

    /** @see Connection::sendTo() */
    public function sendTo(string $connectionId, string $data, bool $binary = false): void
    {
        Frame::assertMessage($data, $binary, $this->response->maxMessage, 'sendTo');
        $this->response->queue(Frame::SEND, Frame::sendPayload($connectionId, $data, $binary), false);
    }

    /**
     * Join a channel. With $forward its messages go straight to the client;
     * without, each one is a message event with $channel set. With $history
     * (and $forward) the client can resume it after a reconnect, as for
     * Connection::subscribe().
     */
    public function subscribe(string $channel, bool $forward = false, bool $history = false): void
    {
        $this->response->queue(Frame::SUBSCRIBE, Frame::subscribePayload($channel, $forward, $history), true);
    }

    public function unsubscribe(string $channel): void
    {
        $this->response->queue(Frame::UNSUBSCRIBE, Frame::unsubscribePayload($channel), true);
    }

    /**
     * Close the connection once this event's actions are applied; a close
     * event with this code follows. After it (and in a close event) calls
     * aimed at this connection do nothing; publish() and sendTo() still work.
     *
     * @throws Exception for a code that may not be sent or a reason that is not UTF-8
     */
    public function close(int $code = 1000, string $reason = ''): void
    {
        $this->response->close($code, $reason);
    }

    /**
     * In a close event how the connection ended: the client's code (1005 if
     * it gave none, 1006 if it vanished), or the code it was closed with.
     * Elsewhere null, or the code of this event's own close().
     */
    public function closeCode(): ?int
    {
        return $this->closeCode ?? $this->response->closeCode();
    }

    public function closeReason(): string
    {
        return $this->closeCode !== null ? $this->closeReason : $this->response->closeReason();
    }

    /**
     * Write this event's answer now and end the request (the script may run
     * on, e.g. to log). Runs by itself at script end; after it no call
     * reaches the daemon.
     */
    public function finish(): void
    {
        $this->response->finish();
    }

    /** @return non-empty-list<self> */
    private static function fromRequest(): array
    {
        Handshake::assertProtocol('Event::receive()');
        $event = $_SERVER['WSFPM_EVENT'] ?? null;
        if ($event === null) {
            throw new Exception('this wsfpm daemon does not offer events mode ($_SERVER[\'WSFPM_EVENT\'] is not set): upgrade it, or use Connection::accept()');
        }
        if ($event !== 'open') {
            // An event answers with frames only; the open event may still reject with a page, so it waits for accept().
            if (headers_sent($file, $line)) {
                throw new Exception("output started at $file:$line, before Event::receive(): an event answers with frames only, so nothing may be printed");
            }
            Handshake::prepareOutput();
            ob_start();
        }
        $in = fopen('php://input', 'rb');
        $out = fopen('php://output', 'wb');
        if ($in === false || $out === false) {
            throw new Exception('cannot open php://input or php://output');
        }
        $events = self::parse($_SERVER, $in, $out, true);
        $response = $events[0]->response;
        register_shutdown_function(static function () use ($response): void {
            // Registered again from inside shutdown so it runs after the script's own
            // shutdown functions, which may still want to send or publish.
            register_shutdown_function(static fn () => $response->shutdown());
        });
        return $events;
    }

    /**
     * @param array<mixed> $server
     * @param resource $in
     * @param resource $out
     * @return non-empty-list<self>
     */
    private static function parse(array $server, $in, $out, bool $underFpm): array
    {
        $event = (string) ($server['WSFPM_EVENT'] ?? '');
        if (!in_array($event, ['open', 'message', 'close'], true)) {
            throw new Exception("unknown WSFPM_EVENT '$event': this library knows open, message and close; upgrade it");
        }
        $maxMessage = Handshake::limit($server, 'WSFPM_MAX_MESSAGE', Frame::DEFAULT_MAX_MESSAGE);
        $response = new EventResponse(
            $event,
            $out,
            (string) ($server['WSFPM_CONNECTION_ID'] ?? ''),
            (string) ($server['WSFPM_META'] ?? ''),
            $maxMessage,
            // --max-meta 0: the daemon keeps no meta, so only setMeta([]) goes.
            Handshake::limit($server, 'WSFPM_MAX_META', Frame::DEFAULT_MAX_META, 0),
            $underFpm,
        );
        if ($event === 'open') {
            return [new self($response, 'open')];
        }
        $frames = Frame::splitFrames((string) stream_get_contents($in), $maxMessage);
        if ($event === 'close') {
            foreach ($frames as [$type, $payload]) {
                if ($type === Frame::CLOSE) {
                    [$code, $reason] = Frame::parseClosePayload($payload);
                    return [new self($response, 'close', '', false, null, $code, $reason)];
                }
            }
            return [new self($response, 'close', '', false, null, Frame::ABNORMAL)];
        }
        $events = [];
        foreach ($frames as [$type, $payload]) {
            if ($type === Frame::TEXT || $type === Frame::BINARY) {
                $events[] = new self($response, 'message', $payload, $type === Frame::BINARY);
            } elseif ($type === Frame::CHANNEL) {
                [$channel, $data, $binary] = Frame::parseChannelPayload($payload);
                $events[] = new self($response, 'message', $data, $binary, $channel);
            }
            // Types we do not know are skipped, as the protocol asks.
        }
        if ($events === []) {
            throw new Exception('malformed event body: a message event without a message');
        }
        return $events;
    }
}
