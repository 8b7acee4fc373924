<?php

declare(strict_types=1);

namespace Wsfpm;

/**
 * The side channel: a unix socket of this connection's own to the daemon,
 * which then carries the frames both ways instead of php://input and
 * php://output (docs/protocol.md, "Side channel"). A real socket means one
 * read and one write per message, and a stream the script can
 * stream_select() on beside its own.
 *
 * The daemon offers it in WSFPM_CHANNEL with a one-time token in
 * WSFPM_CHANNEL_TOKEN. When it cannot be reached (php-fpm on another host,
 * a chroot, a pool user outside the directory's group) the connection uses
 * STDIN/STDOUT as before, with one line on STDERR saying why.
 *
 * @internal
 */
final class SideChannel
{
    public const ACK = "\x01";

    /**
     * Connects and proves the token; null when no channel was offered or it cannot be used.
     *
     * @param array<string, mixed> $server
     * @return resource|null
     */
    public static function open(array $server)
    {
        $address = (string) ($server['WSFPM_CHANNEL'] ?? '');
        $token = (string) ($server['WSFPM_CHANNEL_TOKEN'] ?? '');
        if ($address === '' || !str_starts_with($address, 'unix:') || strlen($token) !== 32 || !ctype_xdigit($token)) {
            return null;
        }
        $path = substr($address, 5);
        $socket = @stream_socket_client('unix://' . $path, $errno, $error, 1.0);
        if ($socket === false) {
            error_log("wsfpm: side channel $path unreachable ($error); this connection uses STDIN/STDOUT");
            return null;
        }
        stream_set_timeout($socket, 2);
        $written = @fwrite($socket, (string) hex2bin($token));
        $ack = $written === 16 ? @fread($socket, 1) : false;
        if ($ack !== self::ACK) {
            fclose($socket);
            error_log('wsfpm: the side channel refused this connection\'s token; it uses STDIN/STDOUT');
            return null;
        }
        // No read buffer: fread() returns what one recv() got, so a frame never waits for more.
        stream_set_read_buffer($socket, 0);
        stream_set_write_buffer($socket, 0);
        // A websocket may be quiet for hours: no read timeout (-1 means none).
        stream_set_timeout($socket, -1);
        return $socket;
    }
}
