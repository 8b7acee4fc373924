<?php

declare(strict_types=1);

// The whole websocket side of the echo demo: accept, then answer every message.
require __DIR__ . '/../../php/autoload.php';

$ws = Wsfpm\Connection::accept();
while (($msg = $ws->receive()) !== null) {
    $ws->send('echo: ' . $msg->data, $msg->binary);
}
