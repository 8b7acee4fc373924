<?php

declare(strict_types=1);

namespace Wsfpm;

/**
 * The daemon <-> PHP frame format (docs/protocol.md): [u8 type][u32 BE length][payload].
 * Pure functions only, so the codec can be tested without php-fpm.
 */
final class Frame
{
    public const OPEN = 0x00;
    public const TEXT = 0x01;
    public const BINARY = 0x02;
    public const CLOSE = 0x08;

    // Channels, sends and timers (docs/protocol.md, "Channels, sends and timers").
    public const SUBSCRIBE = 0x10;
    public const UNSUBSCRIBE = 0x11;
    public const PUBLISH = 0x12;
    public const SEND = 0x13;
    public const CHANNEL = 0x14;
    public const TIMER = 0x20;
    public const TICK = 0x21;
    /** receive($timeout) without the side channel: PHP asks for one after N ms, the daemon sends it back. */
    public const WAKE = 0x22;

    // Events mode (docs/protocol.md, "Events mode").
    public const META = 0x30;

    /** OPEN payload's mode byte: events mode (an empty OPEN payload is bound mode). */
    public const MODE_EVENTS = 0x01;

    /** Most client messages one message event may carry. */
    public const MAX_BATCH = 256;

    /** SUBSCRIBE flag: the channel's messages go straight to the client, not to PHP. */
    public const FLAG_FORWARD = 0x01;
    /** SUBSCRIBE with FORWARD: the channel keeps history and the client gets envelopes it can resume from. */
    public const FLAG_HISTORY = 0x02;

    /** PUBLISH, SEND and CHANNEL flag: the message is binary. */
    public const FLAG_BINARY = 0x01;

    /** PUBLISH flag: not delivered to the publishing connection. */
    public const FLAG_EXCLUDE_SELF = 0x02;

    public const MAX_CHANNEL = 128;

    /** Smallest timer interval the daemon accepts, ms. */
    public const MIN_INTERVAL = 10;

    /** Largest timer interval the frame can carry (u32), ms: about 49 days. */
    public const MAX_INTERVAL = 0xFFFFFFFF;

    /** Bytes a CHANNEL frame adds in front of the data: flags and the channel name's length and name. */
    public const MAX_CHANNEL_OVERHEAD = 2 + self::MAX_CHANNEL;

    public const HEADER_SIZE = 5;

    /** WSFPM_MAX_MESSAGE when the daemon gives none: 1 MiB. */
    public const DEFAULT_MAX_MESSAGE = 1048576;

    /** WSFPM_MAX_META when the daemon gives none: 4 KiB. */
    public const DEFAULT_MAX_META = 4096;

    /** RFC 6455 limits a close frame's payload to 125 bytes, two of which are the code. */
    public const MAX_CLOSE_REASON = 123;

    /** Code we report when the client closed without giving one (RFC 6455 7.1.5). */
    public const NO_STATUS = 1005;

    /** Code we report when the client vanished without a close frame (RFC 6455 7.1.5). */
    public const ABNORMAL = 1006;

    public static function encode(int $type, string $payload = ''): string
    {
        return pack('CN', $type, strlen($payload)) . $payload;
    }

    /**
     * @return array{0: int, 1: int} type and payload length
     */
    public static function decodeHeader(string $header): array
    {
        if (strlen($header) !== self::HEADER_SIZE) {
            throw new Exception('a frame header is exactly 5 bytes');
        }
        /** @var array{type: int, length: int} $h */
        $h = unpack('Ctype/Nlength', $header);
        return [$h['type'], $h['length']];
    }

    public static function closePayload(int $code, string $reason = ''): string
    {
        return pack('n', $code) . self::truncateUtf8($reason, self::MAX_CLOSE_REASON);
    }

    /**
     * @return array{0: int, 1: string} code and reason
     */
    public static function parseClosePayload(string $payload): array
    {
        // A payload too short to hold a code means the client gave none.
        if (strlen($payload) < 2) {
            return [self::NO_STATUS, ''];
        }
        /** @var array{code: int} $c */
        $c = unpack('ncode', $payload);
        return [$c['code'], substr($payload, 2)];
    }

    /**
     * Codes PHP may put in a close frame. 1004-1006 and 1015 are reserved
     * for reporting and must never appear on the wire; 1016-2999 are
     * unassigned, and browsers fail the connection on them.
     */
    public static function isSendableCloseCode(int $code): bool
    {
        return ($code >= 1000 && $code <= 1003)
            || ($code >= 1007 && $code <= 1014)
            || ($code >= 3000 && $code <= 4999);
    }

    /** @throws Exception for a code that may not be sent or a reason that is not UTF-8 */
    public static function assertClose(int $code, string $reason): void
    {
        if (!self::isSendableCloseCode($code)) {
            throw new Exception("close code $code may not be sent; use 1000-1003, 1007-1014 or 3000-4999");
        }
        if (!self::isUtf8($reason)) {
            throw new Exception('a close reason must be valid UTF-8');
        }
    }

    /**
     * @param string $what the call, for the message: 'send', 'publish', ...
     * @throws Exception for text that is not UTF-8 or data over the message limit
     */
    public static function assertMessage(string $data, bool $binary, int $max, string $what): void
    {
        if (strlen($data) > $max) {
            throw new Exception(sprintf('cannot %s %d bytes: the limit is %d (WSFPM_MAX_MESSAGE)', $what, strlen($data), $max));
        }
        if (!$binary && !self::isUtf8($data)) {
            throw new Exception('a text message must be valid UTF-8; send it with $binary = true');
        }
    }

    /** @throws Exception for a frame payload over the daemon's limit, which counts a channel name or id too */
    public static function assertFits(string $payload, int $max): void
    {
        if (strlen($payload) > $max) {
            throw new Exception(sprintf(
                'cannot send a %d-byte frame: the limit is %d (WSFPM_MAX_MESSAGE), and it counts the channel name or id too',
                strlen($payload),
                $max,
            ));
        }
    }

    public static function isUtf8(string $s): bool
    {
        // mbstring is optional; PCRE's UTF-8 check is always there and linear.
        return preg_match('//u', $s) === 1;
    }

    /**
     * Cut $s to at most $max bytes without splitting a UTF-8 character,
     * since a close reason with a broken tail makes browsers fail the connection.
     */
    public static function truncateUtf8(string $s, int $max): string
    {
        if (strlen($s) <= $max) {
            return $s;
        }
        $end = $max;
        // Step back over continuation bytes (10xxxxxx) so the cut lands before a lead byte.
        while ($end > 0 && (ord($s[$end]) & 0xC0) === 0x80) {
            $end--;
        }
        return substr($s, 0, $end);
    }

    /**
     * @throws Exception unless $channel is 1-128 bytes of A-Z a-z 0-9 _ . : @ / = , ; -
     */
    public static function assertChannel(string $channel): void
    {
        if (preg_match('~^[A-Za-z0-9_.:@/=,;-]{1,128}$~D', $channel) !== 1) {
            throw new Exception(sprintf(
                'invalid channel name %s: a channel is 1-128 characters of A-Z a-z 0-9 _ . : @ / = , ; - (e.g. "room:42")',
                self::quote($channel),
            ));
        }
    }

    /**
     * @throws Exception unless $id looks like a WSFPM_CONNECTION_ID: 32 lowercase hex characters
     */
    public static function assertConnectionId(string $id): void
    {
        if (preg_match('/^[0-9a-f]{32}$/D', $id) !== 1) {
            throw new Exception(sprintf(
                'invalid connection id %s: an id is the 32 lowercase hex characters of $ws->id() / $_SERVER[\'WSFPM_CONNECTION_ID\']',
                self::quote($id),
            ));
        }
    }

    public static function subscribePayload(string $channel, bool $forward = false, bool $history = false): string
    {
        self::assertChannel($channel);
        if ($history && !$forward) {
            throw new Exception('history: true needs forward: true (history is what a browser resumes from)');
        }
        return chr(($forward ? self::FLAG_FORWARD : 0) | ($history ? self::FLAG_HISTORY : 0)) . $channel;
    }

    public static function unsubscribePayload(string $channel): string
    {
        self::assertChannel($channel);
        return $channel;
    }

    public static function publishPayload(string $channel, string $data, bool $binary = false, bool $excludeSelf = false): string
    {
        self::assertChannel($channel);
        $flags = ($binary ? self::FLAG_BINARY : 0) | ($excludeSelf ? self::FLAG_EXCLUDE_SELF : 0);
        return chr($flags) . chr(strlen($channel)) . $channel . $data;
    }

    public static function sendPayload(string $id, string $data, bool $binary = false): string
    {
        self::assertConnectionId($id);
        return chr($binary ? self::FLAG_BINARY : 0) . chr(strlen($id)) . $id . $data;
    }

    /**
     * @throws Exception for an interval that is neither 0 (stop) nor 10 ms .. 2^32-1 ms
     */
    /** A WAKE request: after $ms (capped at MAX_INTERVAL), the daemon sends WAKE($seq) back. */
    public static function wakePayload(int $ms, int $seq): string
    {
        return pack('NN', min(max($ms, 0), self::MAX_INTERVAL), $seq & 0xFFFFFFFF);
    }

    public static function timerPayload(int $ms): string
    {
        if ($ms !== 0 && ($ms < self::MIN_INTERVAL || $ms > self::MAX_INTERVAL)) {
            throw new Exception(sprintf(
                'a timer interval is 0 (stop) or %d..%d ms, got %d',
                self::MIN_INTERVAL,
                self::MAX_INTERVAL,
                $ms,
            ));
        }
        return pack('N', $ms);
    }

    /**
     * The OPEN payload that chooses events mode: mode(1) batch(2, BE).
     *
     * @throws Exception for a batch outside 1..256
     */
    public static function openPayload(int $batch): string
    {
        if ($batch < 1 || $batch > self::MAX_BATCH) {
            throw new Exception(sprintf('a batch is 1..%d messages per event, got %d', self::MAX_BATCH, $batch));
        }
        return chr(self::MODE_EVENTS) . pack('n', $batch);
    }

    /**
     * Split a whole event body into its frames.
     *
     * @return list<array{0: int, 1: string}> type and payload of each frame
     * @throws Exception for a frame cut short or over the limit ($max, plus a channel name for CHANNEL)
     */
    public static function splitFrames(string $bytes, int $max): array
    {
        $frames = [];
        $at = 0;
        $total = strlen($bytes);
        while ($at < $total) {
            if ($total - $at < self::HEADER_SIZE) {
                throw new Exception('malformed event body: a frame header is cut short');
            }
            [$type, $length] = self::decodeHeader(substr($bytes, $at, self::HEADER_SIZE));
            $limit = $type === self::CHANNEL ? $max + self::MAX_CHANNEL_OVERHEAD : $max;
            if ($length > $limit) {
                throw new Exception("malformed event body: a $length-byte frame is over the limit of $limit");
            }
            if ($total - $at - self::HEADER_SIZE < $length) {
                throw new Exception('malformed event body: a frame payload is cut short');
            }
            $frames[] = [$type, substr($bytes, $at + self::HEADER_SIZE, $length)];
            $at += self::HEADER_SIZE + $length;
        }
        return $frames;
    }

    /**
     * The payload of a CHANNEL frame (daemon -> PHP).
     *
     * @return array{0: string, 1: string, 2: bool} channel, data, binary
     * @throws Exception for a payload too short for its channel length, or an empty channel
     */
    public static function parseChannelPayload(string $payload): array
    {
        $len = strlen($payload);
        if ($len < 2) {
            throw new Exception('malformed CHANNEL frame: shorter than its 2-byte header');
        }
        $flags = ord($payload[0]);
        $channelLength = ord($payload[1]);
        if ($channelLength === 0 || 2 + $channelLength > $len) {
            throw new Exception('malformed CHANNEL frame: channel length ' . $channelLength . ' does not fit a ' . $len . '-byte payload');
        }
        return [substr($payload, 2, $channelLength), substr($payload, 2 + $channelLength), ($flags & self::FLAG_BINARY) !== 0];
    }

    /** For error messages: a short, printable rendering of a name the caller got wrong. */
    private static function quote(string $s): string
    {
        $shown = strlen($s) > 40 ? substr($s, 0, 40) . '…' : $s;
        return (string) json_encode($shown, JSON_INVALID_UTF8_SUBSTITUTE | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE)
            . ' (' . strlen($s) . ' bytes)';
    }
}
