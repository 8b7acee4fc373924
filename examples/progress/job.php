<?php

declare(strict_types=1);

// A slow job started by an ordinary POST. It answers at once, keeps running
// in its php-fpm worker, and reports each step to the browser tab that asked,
// through the daemon's control API.
require __DIR__ . '/../../php/autoload.php';

use Wsfpm\Client;

const STEPS = 20;
const STEP_MS = 150;

header('Content-Type: application/json');

$id = (string) ($_POST['id'] ?? '');
session_start();
// Only a tab of this session (index.php wrote its id into the session) can be the target.
$mine = isset($_SESSION['tabs'][$id]);
session_write_close();                       // a job that holds the session lock would block the user's other pages
if ($_SERVER['REQUEST_METHOD'] !== 'POST' || !$mine) {
    http_response_code(403);
    echo json_encode(['error' => 'not a connection of this session']);
    exit;
}

echo json_encode(['started' => true, 'steps' => STEPS]);
// The browser gets its answer now; this worker goes on with the job.
if (function_exists('fastcgi_finish_request')) {
    fastcgi_finish_request();
}
ignore_user_abort(true);
set_time_limit(0);

$started = microtime(true);
for ($step = 1; $step <= STEPS; $step++) {
    usleep(STEP_MS * 1000);                  // the "work"
    $reached = Client::send($id, json_encode([
        'type' => 'progress',
        'step' => $step,
        'steps' => STEPS,
        'percent' => intdiv(100 * $step, STEPS),
        'note' => sprintf('step %d: %s', $step, ['fetched', 'parsed', 'checked', 'stored'][$step % 4]),
    ]));
    if ($reached === 0) {
        error_log("progress demo: tab $id is gone, stopping the job at step $step");
        exit;                                // nobody is watching any more
    }
}
Client::send($id, json_encode(['type' => 'done', 'seconds' => round(microtime(true) - $started, 1)]));
