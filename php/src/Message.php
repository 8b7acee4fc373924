<?php

declare(strict_types=1);

namespace Wsfpm;

/**
 * One complete websocket message from the client.
 */
final class Message
{
    public function __construct(
        public readonly string $data,
        public readonly bool $binary,
    ) {
    }
}
