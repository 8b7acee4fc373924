<?php

declare(strict_types=1);

require __DIR__ . '/../../php/autoload.php';

use Wsfpm\Connection;

// The fanout publisher: publishes every message its client sends on the
// channel the subscribers forward (one PUBLISH frame per message).
$ws = Connection::accept();
while (($msg = $ws->receive()) !== null) {
    $ws->publish('bench.fanout', $msg->data, $msg->binary);
}
