<?php

declare(strict_types=1);

namespace Wsfpm;

/**
 * The control API could not be reached, or it refused the request.
 * $status is the HTTP status (0 when there was no answer at all), $errorCode
 * the daemon's stable code (e.g. WSFPM_ERR_CHANNEL) when it gave one.
 */
final class ControlException extends Exception
{
    public function __construct(
        string $message,
        public readonly int $status = 0,
        public readonly ?string $errorCode = null,
        ?\Throwable $previous = null,
    ) {
        parent::__construct($message, $status, $previous);
    }
}
