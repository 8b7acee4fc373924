<?php

declare(strict_types=1);

namespace Wsfpm;

/**
 * A Handler that also wants channel messages and timer ticks delivered to
 * callbacks of their own. Server::serve() calls these for a handler that
 * implements this interface; a plain Handler gets them in onMessage(), where
 * $msg->channel and $msg->tick tell them apart from the client's messages.
 *
 * Subscribe (Connection::subscribe()) and start the timer (Connection::every())
 * in onOpen(): nothing arrives here before that.
 */
interface ChannelHandler extends Handler
{
    /** A message published on $channel, which this connection subscribed to without forwarding. */
    public function onChannel(Connection $conn, string $channel, Message $msg): void;

    /** A tick of the timer started with $conn->every($ms). */
    public function onTimer(Connection $conn): void;
}
