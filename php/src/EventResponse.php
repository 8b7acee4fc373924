<?php

declare(strict_types=1);

namespace Wsfpm;

/**
 * What one events-mode request answers: for the open event the 101 and the
 * OPEN frame, then the actions its script asked for. Shared by every Event
 * of the request (a batched message event has several), so meta() and the
 * actions are the request's, not one message's.
 *
 * Nothing is written until finish(): the daemon applies an event's actions
 * only if its request ended cleanly, so a script that dies halfway must
 * leave no trace, and one write at the end is the simplest way to get that.
 * Written in call order, except that META goes after the other actions
 * (only later events read it) and CLOSE last (nothing may follow it).
 *
 * @internal
 */
final class EventResponse
{
    private bool $accepted = false;

    private bool $rejected = false;

    private bool $finished = false;

    private string $openPayload = '';

    /** @var list<array{0: string, 1: bool}> */
    private array $headerLines = [];

    /** @var list<string> encoded frames, in call order */
    private array $actions = [];

    private ?string $metaFrame = null;

    /** @var array<mixed>|null decoded lazily: an event that never asks pays nothing */
    private ?array $meta = null;

    private ?int $closeCode = null;

    private string $closeReason = '';

    /**
     * @param 'open'|'message'|'close' $event
     * @param resource $out
     */
    public function __construct(
        public readonly string $event,
        private $out,
        public readonly string $id,
        private readonly string $metaJson,
        public readonly int $maxMessage,
        private readonly int $maxMeta,
        private readonly bool $underFpm,
    ) {
    }

    /** @param array<string, string|list<string>> $headers */
    public function accept(array $headers, int $batch): void
    {
        $this->assertOpenEvent('accept()');
        $payload = Frame::openPayload($batch);
        $lines = Handshake::headerLines($headers);
        if ($this->accepted || $this->rejected) {
            throw new Exception('this request was already accepted or rejected');
        }
        if ($this->underFpm) {
            Handshake::assertCanRespond();
            Handshake::prepareOutput();
            Handshake::markAnswered();
            // Whatever the script prints from here on would corrupt the frames: caught, dropped at finish().
            ob_start();
        }
        $this->accepted = true;
        $this->openPayload = $payload;
        $this->headerLines = $lines;
    }

    /** @param array<string, string|list<string>> $headers */
    public function reject(int $status, string $body, array $headers): never
    {
        $this->assertOpenEvent('reject()');
        if ($this->accepted) {
            throw new Exception('this request was already accepted or rejected');
        }
        if (!$this->underFpm) {
            throw new Exception('reject() ends the PHP request, so it only works in a request of the daemon\'s (Event::receive())');
        }
        $this->rejected = true;
        Handshake::reject($status, $body, $headers);
    }

    public function accepted(): bool
    {
        return $this->accepted;
    }

    public function rejected(): bool
    {
        return $this->rejected;
    }

    /**
     * Queue an action frame. $toSelf: aimed at this connection, so pointless once it is
     * closing; the daemon drops those in a close event, and so do we.
     */
    public function queue(int $type, string $payload, bool $toSelf): void
    {
        $this->assertNotFinished();
        Frame::assertFits($payload, $this->maxMessage);
        if ($toSelf && ($this->event === 'close' || $this->closeCode !== null)) {
            return;
        }
        $this->actions[] = Frame::encode($type, $payload);
    }

    public function close(int $code, string $reason): void
    {
        Frame::assertClose($code, $reason);
        $this->assertNotFinished();
        if ($this->event === 'close' || $this->closeCode !== null) {
            return;
        }
        $this->closeCode = $code;
        $this->closeReason = Frame::truncateUtf8($reason, Frame::MAX_CLOSE_REASON);
    }

    public function closeCode(): ?int
    {
        return $this->closeCode;
    }

    public function closeReason(): string
    {
        return $this->closeReason;
    }

    /** @return array<mixed> */
    public function meta(): array
    {
        if ($this->meta === null) {
            $meta = $this->metaJson === '' ? [] : json_decode($this->metaJson, true);
            if (!is_array($meta)) {
                throw new Exception('WSFPM_META is not a JSON object or array: meta is set with Event::setMeta() only');
            }
            $this->meta = $meta;
        }
        return $this->meta;
    }

    /** @param array<mixed> $meta */
    public function setMeta(array $meta): void
    {
        $this->assertNotFinished();
        try {
            $json = $meta === [] ? '' : json_encode($meta, JSON_THROW_ON_ERROR | JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_PRESERVE_ZERO_FRACTION);
        } catch (\JsonException $e) {
            throw new Exception('setMeta(): the meta must be JSON-encodable (' . $e->getMessage() . ')', 0, $e);
        }
        if (strlen($json) > $this->maxMeta) {
            throw new Exception(sprintf(
                'setMeta(): %d bytes of JSON, the limit is %d (WSFPM_MAX_META): meta is for a few ids and counters; keep the rest in the session or a database',
                strlen($json),
                $this->maxMeta,
            ));
        }
        // What the next event will decode, so this request sees the same.
        $this->meta = $json === '' ? [] : json_decode($json, true);
        if ($this->event !== 'close') {
            // Only the last one matters: the daemon replaces the meta with each.
            $this->metaFrame = Frame::encode(Frame::META, $json);
        }
    }

    /**
     * Write everything in one go and end the request. Idempotent; also runs
     * from the shutdown function at script end.
     *
     * @throws Exception when the write fails
     */
    public function finish(): void
    {
        if ($this->finished) {
            return;
        }
        $this->finished = true;
        if ($this->event === 'open' && !$this->accepted) {
            // Refused, or left undecided: PHP's own response is the refusal, and no action applies.
            if (!$this->rejected && ($this->actions !== [] || $this->metaFrame !== null)) {
                error_log('wsfpm: the open event ended without Event::accept() or reject(), so its actions were dropped and the client was refused');
            }
            return;
        }
        $bytes = ($this->event === 'open' ? Frame::encode(Frame::OPEN, $this->openPayload) : '')
            . implode('', $this->actions)
            . ($this->metaFrame ?? '')
            . ($this->closeCode === null ? '' : Frame::encode(Frame::CLOSE, Frame::closePayload($this->closeCode, $this->closeReason)));
        if ($this->underFpm && !$this->readyToAnswer()) {
            return;
        }
        if (fwrite($this->out, $bytes) !== strlen($bytes)) {
            throw new Exception('writing to the daemon failed: the event\'s actions are lost');
        }
        fflush($this->out);
        if ($this->underFpm) {
            Handshake::finishRequest();
        }
    }

    /** Runs last at script end, see Event::receive(). */
    public function shutdown(): void
    {
        if ($this->finished) {
            return;
        }
        if (Handshake::diedOfFatal()) {
            // All or nothing: the daemon sees the 500 (and PHP's log line on STDERR) and applies none.
            $this->finished = true;
            Handshake::dropOutputBuffers();
            if (!headers_sent()) {
                http_response_code(500);
            }
            return;
        }
        try {
            $this->finish();
        } catch (\Throwable $e) {
            error_log('wsfpm: ' . $e->getMessage());
        }
    }

    /** Under php-fpm, just before the write: the output is ours, and nothing says the script failed. */
    private function readyToAnswer(): bool
    {
        $stray = Handshake::dropOutputBuffers();
        if ($stray > 0) {
            error_log("wsfpm: dropped $stray bytes an event script printed (echo, print, whitespace around <?php ?>): an event answers with frames only; use \$ev->send()");
        }
        if (headers_sent($file, $line)) {
            error_log("wsfpm: output started at $file:$line, so the event's actions cannot be sent; the daemon fails the event");
            return false;
        }
        $status = http_response_code();
        if (is_int($status) && ($status < 200 || $status > 299)) {
            // A framework's error handler set it: the event failed, so none of its actions may apply.
            return false;
        }
        // Saved before the daemon runs the connection's next event, which may read it.
        if (session_status() === PHP_SESSION_ACTIVE) {
            session_write_close();
        }
        if ($this->event === 'open') {
            Handshake::sendHead(101, $this->headerLines);
        }
        return true;
    }

    private function assertOpenEvent(string $call): void
    {
        if ($this->event !== 'open') {
            throw new Exception("$call is for the open event; this is a '{$this->event}' event of a connection already accepted (close() ends it)");
        }
    }

    private function assertNotFinished(): void
    {
        if ($this->finished) {
            throw new Exception('this event\'s request has ended (finish()): nothing more reaches the daemon');
        }
    }
}
