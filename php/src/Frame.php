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

    public const HEADER_SIZE = 5;

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
}
