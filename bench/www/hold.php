<?php

declare(strict_types=1);

require __DIR__ . '/../../php/autoload.php';

use Wsfpm\Connection;

// The hold scenario's script: tells the client which php-fpm worker holds it
// (so the bench can read that worker's PSS), then echoes like echo.php.
$ws = Connection::accept();
$ws->send((string) getmypid());
while (($msg = $ws->receive()) !== null) {
    $ws->send($msg->data, $msg->binary);
}
