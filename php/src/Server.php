<?php

declare(strict_types=1);

namespace Wsfpm;

/**
 * Drives a Handler over one connection (bound mode), or an EventHandler over
 * the events of one request (events mode), for code written in callback style.
 */
final class Server
{
    /**
     * Accept the upgrade and serve it until it closes.
     *
     * @param array<string, string|list<string>> $headers as for Connection::accept()
     */
    public static function run(Handler $handler, array $headers = []): void
    {
        self::serve(Connection::accept($headers), $handler);
    }

    /**
     * Serve an already accepted connection. onClose is called exactly once, even
     * when a callback throws: the error goes to onError and the client gets 1011.
     * A ChannelHandler gets channel messages in onChannel() and ticks in onTimer().
     */
    public static function serve(Connection $conn, Handler $handler): void
    {
        try {
            $handler->onOpen($conn);
            $channels = $handler instanceof ChannelHandler ? $handler : null;
            while (($msg = $conn->receive()) !== null) {
                if ($channels !== null && $msg->tick) {
                    $channels->onTimer($conn);
                } elseif ($channels !== null && $msg->channel !== null) {
                    $channels->onChannel($conn, $msg->channel, $msg);
                } else {
                    // A plain Handler gets channel messages and ticks here too (it asked for them).
                    $handler->onMessage($conn, $msg);
                }
            }
        } catch (\Throwable $e) {
            try {
                $handler->onError($conn, $e);
            } finally {
                // The exception text stays server-side: the client only learns that we failed.
                $conn->close(1011, 'internal error');
                $handler->onClose($conn, $conn->closeCode() ?? 1011, $conn->closeReason());
            }
            return;
        }
        $handler->onClose($conn, $conn->closeCode() ?? Frame::ABNORMAL, $conn->closeReason());
    }

    /**
     * Events mode: handle the event this request carries. In the open event
     * onOpen() runs, then the connection is accepted with $batch unless
     * onOpen() accepted (or rejected) it itself.
     *
     * @param int $batch the most queued client messages one request may carry (1-256); each is one onMessage()
     */
    public static function events(EventHandler $handler, int $batch = 16): void
    {
        self::serveEvents(Event::receiveAll(), $handler, $batch);
    }

    /**
     * Dispatch already received events (Event::receiveAll()). After the
     * handler's own $ev->close() the rest of a batch is not dispatched: the
     * connection is closing, as receive() returns null after close() in bound mode.
     *
     * @param non-empty-list<Event> $events
     */
    public static function serveEvents(array $events, EventHandler $handler, int $batch = 16): void
    {
        $first = $events[0];
        if ($first->type === 'open') {
            // Checked before onOpen() runs, so a bad batch is not mistaken for onOpen()'s failure.
            Frame::openPayload($batch);
            $handler->onOpen($first);
            if (!$first->accepted()) {
                $first->accept(batch: $batch);
            }
        } elseif ($first->type === 'close') {
            $handler->onClose($first);
        } else {
            foreach ($events as $ev) {
                if ($ev->closeCode() !== null) {
                    break;
                }
                $handler->onMessage($ev);
            }
        }
    }
}
