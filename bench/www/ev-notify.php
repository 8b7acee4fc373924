<?php
// The events-mode bench script: every open is decided by PHP reading the
// session (no uid: 401); the tab subscribes with FORWARD to "all" and to its
// user's channel; every message is echoed after session_start(), as a site's
// notification socket would.
declare(strict_types=1);
require __DIR__ . '/../../php/autoload.php';

session_start();
if (!isset($_SESSION['uid']) && isset($_GET['login'])) {
    $_SESSION['uid'] = (int) $_GET['login'];
}
if (!isset($_SERVER['WSFPM_EVENT'])) {
    echo session_id();
    exit;
}
$uid = $_SESSION['uid'] ?? null;
session_write_close();
$ev = Wsfpm\Event::receive();
if ($ev->type === 'open') {
    if ($uid === null) {
        $ev->reject(401, 'log in first');
    }
    $ev->accept();
    $ev->subscribe('all', forward: true);
    $ev->subscribe('user:' . $uid, forward: true);
} elseif ($ev->type === 'message') {
    $ev->send($ev->data);
}
