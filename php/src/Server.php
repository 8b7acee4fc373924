<?php

declare(strict_types=1);

namespace Wsfpm;

/**
 * Drives a Handler over one connection, for code written in callback style.
 */
final class Server
{
    /**
     * Accept the upgrade and serve it until it closes.
     *
     * @param array<string, string|list<string>> $headers as for Connection::accept()
     */
    public static function run(Handler $handler, array $headers = []): void
    {
        self::serve(Connection::accept($headers), $handler);
    }

    /**
     * Serve an already accepted connection. onClose is called exactly once, even
     * when a callback throws: the error goes to onError and the client gets 1011.
     * A ChannelHandler gets channel messages in onChannel() and ticks in onTimer().
     */
    public static function serve(Connection $conn, Handler $handler): void
    {
        try {
            $handler->onOpen($conn);
            $channels = $handler instanceof ChannelHandler ? $handler : null;
            while (($msg = $conn->receive()) !== null) {
                if ($channels !== null && $msg->tick) {
                    $channels->onTimer($conn);
                } elseif ($channels !== null && $msg->channel !== null) {
                    $channels->onChannel($conn, $msg->channel, $msg);
                } else {
                    // A plain Handler gets channel messages and ticks here too (it asked for them).
                    $handler->onMessage($conn, $msg);
                }
            }
        } catch (\Throwable $e) {
            try {
                $handler->onError($conn, $e);
            } finally {
                // The exception text stays server-side: the client only learns that we failed.
                $conn->close(1011, 'internal error');
                $handler->onClose($conn, $conn->closeCode() ?? 1011, $conn->closeReason());
            }
            return;
        }
        $handler->onClose($conn, $conn->closeCode() ?? Frame::ABNORMAL, $conn->closeReason());
    }
}
