<?php

declare(strict_types=1);

// The page, and its websocket on the same URL. The websocket's only job is
// to exist: it tells the page its connection id, and job.php (an ordinary
// page request) pushes progress to that id through the control API.
require __DIR__ . '/../../php/autoload.php';

use Wsfpm\Connection;

session_start();

if (isset($_SERVER['WSFPM_PROTOCOL'])) {
    // Before accept() the session is still writable: remember that this tab
    // belongs to this session, so job.php only pushes to the session's own tabs.
    $tabs = $_SESSION['tabs'] ?? [];
    $tabs[$_SERVER['WSFPM_CONNECTION_ID']] = time();
    $_SESSION['tabs'] = array_slice($tabs, -20, null, true);

    $ws = Connection::accept();              // saves and releases the session
    $ws->send(json_encode(['type' => 'hello', 'id' => $ws->id()]));
    while ($ws->receive() !== null) {
        // Nothing to read: progress arrives from job.php, straight to the browser.
    }
    exit;
}
?>
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wsfpm progress</title>
<link rel="icon" href="data:,">
<style>
  body { font: 16px/1.4 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  .bar { display: flex; align-items: center; gap: .75rem; margin: 1.25rem 0; }
  progress { flex: 1; height: 1.4rem; }
  #percent { min-width: 3.5rem; text-align: right; font-variant-numeric: tabular-nums; font-weight: 600; }
  #status, #tab { color: #666; }
  #steps { color: #555; font-size: .9rem; margin: 0; padding: .4rem .4rem .4rem 2.6rem; height: 8.5rem; overflow-y: auto; border: 1px solid #ddd; border-radius: 6px; }
  #steps:empty { display: none; }
  button { font: inherit; padding: .3rem .9rem; }
</style>
</head>
<body>
<h1>wsfpm progress</h1>
<p>The button starts a slow PHP job with an ordinary <code>fetch()</code> POST to <code>job.php</code>.
The job pushes its progress to this tab, and only this tab, with <code>Wsfpm\Client::send($id, …)</code>.</p>
<p id="tab">connecting…</p>
<button id="start" disabled>Start the job</button>
<div class="bar"><progress id="bar" max="100" value="0"></progress><span id="percent">0%</span></div>
<p id="status">idle</p>
<ol id="steps"></ol>
<script>
  const bar = document.getElementById('bar');
  const percent = document.getElementById('percent');
  const status = document.getElementById('status');
  const start = document.getElementById('start');
  const steps = document.getElementById('steps');
  let id = null;

  function connect() {
    const ws = new WebSocket(location.href.replace(/^http/, 'ws').replace(/[?#].*$/, ''));
    ws.onmessage = (event) => {
      const e = JSON.parse(event.data);
      if (e.type === 'hello') {
        id = e.id;
        document.getElementById('tab').textContent = 'this tab is connection ' + id;
        start.disabled = false;
      } else if (e.type === 'progress') {
        bar.value = e.percent;
        percent.textContent = e.percent + '%';
        status.textContent = 'working… step ' + e.step + ' of ' + e.steps;
        const li = document.createElement('li');
        li.textContent = e.note;
        steps.append(li);
        steps.scrollTop = steps.scrollHeight;
      } else if (e.type === 'done') {
        bar.value = 100;
        percent.textContent = '100%';
        status.textContent = 'done in ' + e.seconds + ' s';
        start.disabled = false;
      }
    };
    ws.onclose = () => {
      id = null;
      start.disabled = true;
      document.getElementById('tab').textContent = 'disconnected; reconnecting…';
      setTimeout(connect, 2000);
    };
  }
  connect();

  start.addEventListener('click', async () => {
    start.disabled = true;
    bar.value = 0;
    percent.textContent = '0%';
    steps.replaceChildren();
    status.textContent = 'starting…';
    const answer = await fetch('job.php', { method: 'POST', body: new URLSearchParams({ id }) });
    const body = await answer.json();
    if (!answer.ok) {
      status.textContent = 'refused: ' + body.error;
      start.disabled = false;
    } else {
      status.textContent = 'started; the job answered and runs on';
    }
  });
</script>
</body>
</html>
