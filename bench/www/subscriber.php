<?php

declare(strict_types=1);

require __DIR__ . '/../../php/autoload.php';

use Wsfpm\Connection;

// A fanout subscriber: a FORWARD subscription, so the channel's messages go
// from the daemon straight to the client and never pass through this script.
// 'ready' follows the SUBSCRIBE frame in the same stream, so once the client
// has it the daemon has registered the subscription.
$ws = Connection::accept();
$ws->subscribe('bench.fanout', true);
$ws->send('ready');
while ($ws->receive() !== null) {
    // Nothing to do: the script only holds the subscription until the client leaves.
}
