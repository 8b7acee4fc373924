<?php

declare(strict_types=1);

namespace Wsfpm;

/**
 * Callback style for people coming from Ratchet; see Server::run().
 * A connection is one request, so a handler only ever sees one Connection.
 */
interface Handler
{
    public function onOpen(Connection $conn): void;

    public function onMessage(Connection $conn, Message $msg): void;

    /** $code is the client's close code (1005: none given, 1006: vanished), or PHP's own if it closed first. */
    public function onClose(Connection $conn, int $code, string $reason): void;

    /** Called with whatever another callback threw (onOpen, onMessage, and a ChannelHandler's onChannel, onTimer); the connection is then closed with 1011. */
    public function onError(Connection $conn, \Throwable $e): void;
}
