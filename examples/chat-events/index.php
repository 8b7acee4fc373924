<?php

declare(strict_types=1);

// The chat of examples/chat in events mode. The page is the same (the
// browser cannot tell which mode its websocket runs in), but no php-fpm
// worker waits for anyone: the daemon holds each websocket, and runs this
// script once per event (someone opens the room, says something, leaves)
// as a short ordinary request. Each of those requests carries the page's
// session cookie, so session_start() works in every event.
//
// What a bound script keeps in local variables lives here in the
// connection's meta (the name it joined with), handed to every event.

use Wsfpm\Event;
use Wsfpm\EventHandler;
use Wsfpm\Server;

if (!isset($_SERVER['WSFPM_PROTOCOL'])) {
    // A page request: the login form or the chat room, exactly as in examples/chat.
    require __DIR__ . '/../chat/index.php';
    return;
}

require __DIR__ . '/../../php/autoload.php';

final class Lobby implements EventHandler
{
    /** The browsers' channel: subscribed with FORWARD, so the daemon hands its messages straight to every browser. */
    private const ROOM = 'chat:lobby';

    /**
     * The scripts' channel: a newcomer's "hello" becomes one message event for
     * each member, whose script introduces itself to the newcomer. (For a
     * room of thousands keep the names in a database instead, and list the
     * room with Wsfpm\Client::members().)
     */
    private const PRESENCE = 'chat:lobby.presence';

    public function onOpen(Event $ev): void
    {
        $name = $_SESSION['name'] ?? null;
        if (!is_string($name)) {
            $ev->reject(401, 'log in first');
        }
        $ev->setMeta(['name' => $name]);
        $me = ['id' => $ev->id(), 'name' => $name];
        $ev->send(self::event(['type' => 'welcome'] + $me));   // so the page knows which member it is
        $ev->subscribe(self::ROOM, forward: true, history: true);   // the page (client/wsfpm.js) resumes it after a reconnect
        $ev->subscribe(self::PRESENCE);                         // its messages come to onMessage(), with $ev->channel set
        $ev->publish(self::PRESENCE, self::event(['type' => 'hello'] + $me), excludeSelf: true);
        $ev->publish(self::ROOM, self::event(['type' => 'join'] + $me));
        // Server::events() accepts once this returns: all of the above is sent with the 101.
    }

    public function onMessage(Event $ev): void
    {
        $me = ['id' => $ev->id(), 'name' => $ev->meta()['name'] ?? '?'];
        if ($ev->channel === self::PRESENCE) {
            // Someone joined: tell their browser we are here, so it can list us.
            $hello = json_decode($ev->data, true);
            if (is_array($hello) && ($hello['type'] ?? null) === 'hello' && is_string($hello['id'] ?? null)) {
                $ev->sendTo($hello['id'], self::event(['type' => 'member'] + $me));
            }
            return;
        }
        // The session is read again in every event: logged out in another tab, this one leaves too.
        if (!is_string($_SESSION['name'] ?? null)) {
            $ev->close(4001, 'logged out');
            return;
        }
        // A line typed in our browser.
        $text = trim($ev->data);
        if ($ev->binary || $text === '' || strlen($text) > 2000) {
            return;
        }
        $ev->publish(self::ROOM, self::event(['type' => 'message', 'name' => $me['name'], 'text' => $text, 'at' => time()]));
    }

    public function onClose(Event $ev): void
    {
        // The browser is gone, but publishing to the others still works in the close event.
        $ev->publish(self::ROOM, self::event(['type' => 'leave', 'id' => $ev->id(), 'name' => $ev->meta()['name'] ?? '?']));
    }

    private static function event(array $fields): string
    {
        return json_encode($fields, JSON_THROW_ON_ERROR | JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES);
    }
}

session_start();
Server::events(new Lobby());
