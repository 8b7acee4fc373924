<?php
require __DIR__ . '/../php/autoload.php';
session_start();

if (!isset($_SERVER['WSFPM_PROTOCOL'])) {              // 1. an ordinary page request
    if (preg_match('/^.{1,24}$/u', trim($_POST['name'] ?? '')) === 1) {
        $_SESSION['name'] = trim($_POST['name']);
    }
    if (!isset($_SESSION['name'])) {
        exit('<form method="post">Name: <input name="name" autofocus> <button>Chat</button></form>');
    }
    ?>
    <ul id="log"></ul>
    <form id="say"><input id="text" autocomplete="off" autofocus> <button>Send</button></form>
    <script>
      const ws = new WebSocket(location.href.replace(/^http/, 'ws'));   // this same URL
      const log = document.getElementById('log'), text = document.getElementById('text');
      ws.onmessage = (event) => {
        const li = document.createElement('li');
        li.textContent = event.data;
        log.append(li);
      };
      document.getElementById('say').onsubmit = (event) => {
        event.preventDefault();
        ws.send(text.value);
        text.value = '';
      };
    </script>
    <?php
    exit;
}

// 2. the websocket: the same script, now holding one connection
$name = $_SESSION['name'] ?? Wsfpm\Connection::reject(401, 'log in first');
$ws = Wsfpm\Connection::accept();
$ws->subscribe('chat', forward: true);       // whatever is published on "chat" goes straight to this browser
$ws->publish('chat', "$name joined");
while (($msg = $ws->receive()) !== null) {   // one message typed in this browser
    $ws->publish('chat', "$name: $msg->data");
}
Wsfpm\Client::publish('chat', "$name left");  // the browser is gone; tell the others
