<?php
require __DIR__ . '/../php/autoload.php';
$reached = Wsfpm\Client::publish('chat', 'Announcement: ' . ($_GET['text'] ?? 'hello'));
echo "sent to $reached browsers\n";
