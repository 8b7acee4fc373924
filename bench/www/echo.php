<?php

declare(strict_types=1);

require __DIR__ . '/../../php/autoload.php';

use Wsfpm\Connection;

// The benchmark's echo: every message back byte for byte, same text/binary type.
$ws = Connection::accept();
while (($msg = $ws->receive()) !== null) {
    $ws->send($msg->data, $msg->binary);
}
