<?php

declare(strict_types=1);

namespace Wsfpm;

/**
 * Everything this library throws, so callers can catch it apart from their own errors.
 */
class Exception extends \RuntimeException
{
}
