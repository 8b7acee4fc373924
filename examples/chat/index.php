<?php

declare(strict_types=1);

// A chat room in one file. The same URL is the page (login form or chat
// room) and, when the browser opens a websocket on it, that page's
// websocket: wsfpm runs this script for both, and the websocket request
// carries the page's session cookie, so $_SESSION['name'] says who it is.
require __DIR__ . '/../../php/autoload.php';

use Wsfpm\Client;
use Wsfpm\Connection;
use Wsfpm\ControlException;

/** The browsers' channel: subscribed with FORWARD, so the daemon hands its messages straight to every browser. */
const ROOM = 'chat:lobby';
/** The PHP scripts' channel: a newcomer's "hello" reaches every other connection's script, which introduces itself. */
const PRESENCE = 'chat:lobby.presence';

function event(array $fields): string
{
    return json_encode($fields, JSON_THROW_ON_ERROR | JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES);
}

session_start();

// ---------------------------------------------------------------- the websocket
if (isset($_SERVER['WSFPM_PROTOCOL'])) {
    $name = $_SESSION['name'] ?? null;
    if (!is_string($name)) {
        Connection::reject(401, 'log in first');
    }
    $ws = Connection::accept();              // from here on this request is the websocket; the session lock is released
    $me = ['id' => $ws->id(), 'name' => $name];
    $ws->send(event(['type' => 'welcome'] + $me));   // so the page knows which member it is

    $ws->subscribe(ROOM, forward: true, history: true);   // room messages go to the browser without waking this script; a reconnecting page gets what it missed
    $ws->subscribe(PRESENCE);                // presence messages come to this script, through receive()
    $ws->publish(PRESENCE, event(['type' => 'hello'] + $me), excludeSelf: true);
    $ws->publish(ROOM, event(['type' => 'join'] + $me));

    while (($msg = $ws->receive()) !== null) {
        if ($msg->channel === PRESENCE) {
            // Someone joined: tell their browser we are here, so it can list us.
            $hello = json_decode($msg->data, true);
            if (is_array($hello) && ($hello['type'] ?? null) === 'hello') {
                $ws->sendTo($hello['id'], event(['type' => 'member'] + $me));
            }
            continue;
        }
        // A line typed in our browser.
        $text = trim($msg->data);
        if ($msg->binary || $text === '' || strlen($text) > 2000) {
            continue;
        }
        $ws->publish(ROOM, event(['type' => 'message', 'name' => $name, 'text' => $text, 'at' => time()]));
    }

    // The browser left (tab closed, network gone). The connection is over, so
    // the goodbye goes out through the control API, like any other PHP code would send it.
    Client::publish(ROOM, event(['type' => 'leave'] + $me));
    exit;
}

// ---------------------------------------------------------------- the page
if ($_SERVER['REQUEST_METHOD'] === 'POST') {
    if (isset($_POST['logout'])) {
        unset($_SESSION['name']);
    } else {
        $name = trim(preg_replace('/[\p{C}]+/u', '', (string) ($_POST['name'] ?? '')) ?? '');
        if (preg_match('/^.{1,24}$/u', $name) === 1) {
            $_SESSION['name'] = $name;
        }
    }
    header('Location: ' . strtok($_SERVER['REQUEST_URI'], '?'), true, 303);
    exit;
}

$name = $_SESSION['name'] ?? null;
// Presence from a page request: how many browsers are in the room right now.
try {
    $here = count(Client::members(ROOM));
} catch (ControlException) {
    $here = null;                            // control API not reachable from this pool: just do not show it
}
$h = static fn (string $s): string => htmlspecialchars($s, ENT_QUOTES);
?>
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wsfpm chat</title>
<link rel="icon" href="data:,">
<style>
  body { font: 16px/1.4 system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  header { display: flex; align-items: baseline; gap: 1rem; }
  header form { margin-left: auto; }
  main { display: grid; grid-template-columns: 1fr 12rem; gap: 1rem; }
  #log { list-style: none; padding: .5rem; margin: 0; height: 22rem; overflow-y: auto; border: 1px solid #ddd; border-radius: 6px; }
  #log li { padding: .15rem 0; word-break: break-word; }
  #log .notice { color: #777; font-style: italic; }
  #log .name { font-weight: 600; margin-right: .4rem; }
  #log .mine .name { color: #075; }
  aside { border: 1px solid #ddd; border-radius: 6px; padding: .5rem; }
  aside h2 { font-size: 1rem; margin: 0 0 .5rem; }
  #members { list-style: none; padding: 0; margin: 0; }
  #members li::before { content: "● "; color: #2a2; }
  #say { display: flex; gap: .5rem; margin-top: .75rem; grid-column: 1 / -1; }
  #say input, .login input { flex: 1; font: inherit; padding: .4rem; }
  button { font: inherit; }
  #status { color: #666; }
  .login { display: flex; gap: .5rem; max-width: 26rem; }
</style>
</head>
<body>
<?php if ($name === null): ?>
<h1>wsfpm chat</h1>
<p>Pick a name. It is kept in your PHP session, and the chat's websocket reads it from there.</p>
<form class="login" method="post">
  <input name="name" id="name" maxlength="24" placeholder="your name" required autofocus>
  <button id="login">Enter the room</button>
</form>
<?php if ($here !== null): ?><p id="here"><?= $here ?> <?= $here === 1 ? 'person is' : 'people are' ?> chatting right now.</p><?php endif ?>
<?php else: ?>
<header>
  <h1>wsfpm chat</h1>
  <span id="status">connecting…</span>
  <form method="post"><input type="hidden" name="logout" value="1"><button>Leave as <?= $h($name) ?></button></form>
</header>
<main>
  <ul id="log"></ul>
  <aside><h2>In the room</h2><ul id="members"></ul></aside>
  <form id="say">
    <input id="text" autocomplete="off" placeholder="say something, <?= $h($name) ?>" maxlength="2000" disabled>
    <button id="send" disabled>Send</button>
  </form>
</main>
<script type="module">
  // wsfpm's browser module: reconnects with backoff and resumes the room where it left off.
  import { connect } from '/.wsfpm/wsfpm.js';
  const log = document.getElementById('log');
  const members = document.getElementById('members');
  const status = document.getElementById('status');
  const text = document.getElementById('text');
  const send = document.getElementById('send');
  const people = new Map();          // connection id -> name
  let myId = null;

  function line(parts, kind) {
    const li = document.createElement('li');
    li.className = kind;
    for (const [cls, value] of parts) {
      const span = document.createElement('span');
      if (cls) span.className = cls;
      span.textContent = value;      // never innerHTML: names and messages are other people's input
      li.append(span);
    }
    log.append(li);
    log.scrollTop = log.scrollHeight;
  }

  function renderMembers() {
    members.replaceChildren(...[...people].sort((a, b) => a[1].localeCompare(b[1])).map(([id, name]) => {
      const li = document.createElement('li');
      li.textContent = name + (id === myId ? ' (you)' : '');
      return li;
    }));
  }

  // The page's own URL, as a websocket: wsfpm sends the upgrade to this same script.
  const ws = connect(location.href.replace(/[?#].*$/, ''));
  ws.onopen = () => {
    status.textContent = 'connected';
    text.disabled = send.disabled = false;
    text.focus();
  };
  ws.onmessage = (data) => {
    const e = JSON.parse(data);
    if (e.type === 'welcome') {
      myId = e.id;
      people.set(e.id, e.name);
    } else if (e.type === 'join') {
      people.set(e.id, e.name);
      line([[null, e.id === myId ? 'You joined the room.' : e.name + ' joined.']], 'notice');
    } else if (e.type === 'member') {
      people.set(e.id, e.name);
    } else if (e.type === 'leave') {
      people.delete(e.id);
      line([[null, e.name + ' left.']], 'notice');
    } else if (e.type === 'message') {
      line([['name', e.name], ['text', e.text]], e.name === <?= json_encode($name, JSON_HEX_TAG | JSON_HEX_AMP) ?> ? 'message mine' : 'message');
    }
    renderMembers();
  };
  ws.onrecovered = (_channel, missed) => {
    if (missed > 0) line([[null, 'Back: ' + missed + ' missed line(s) above.']], 'notice');
  };
  ws.onlost = () => line([[null, 'Reconnected; some lines may be missing (the room\'s history did not reach back far enough).']], 'notice');
  ws.onclose = (event) => {
    status.textContent = 'disconnected (' + event.code + '); reconnecting…';
    text.disabled = send.disabled = true;
    people.clear();
    myId = null;
    renderMembers();
  };

  document.getElementById('say').addEventListener('submit', (event) => {
    event.preventDefault();
    if (text.value.trim() === '' || !ws.send(text.value)) return;
    text.value = '';
  });
</script>
<?php endif ?>
</body>
</html>
