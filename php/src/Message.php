<?php

declare(strict_types=1);

namespace Wsfpm;

/**
 * One thing receive() handed over: a complete websocket message from the
 * client, a message published on a channel this connection subscribed to
 * ($channel is set), or a timer tick ($tick is true, $data is '').
 *
 * Channel messages and ticks only ever arrive after the script asked for
 * them (subscribe(), every()), so a script that does neither only sees its
 * client's messages, exactly as before.
 */
final class Message
{
    public function __construct(
        public readonly string $data,
        public readonly bool $binary,
        /** The channel this message was published on; null for a message from the client (or a tick). */
        public readonly ?string $channel = null,
        /** True for a timer tick (see Connection::every()). */
        public readonly bool $tick = false,
    ) {
    }

    /** A message the client sent (not a channel message, not a tick). */
    public function fromClient(): bool
    {
        return $this->channel === null && !$this->tick;
    }
}
