<?php

declare(strict_types=1);

namespace Wsfpm;

/**
 * Callback style for events mode; see Server::events(). Each callback runs
 * in a request of its own, so keep what must last in $ev->setMeta(), the
 * session or a database, never in the handler's properties.
 *
 * Nothing to catch: a callback that throws fails its whole event (none of
 * its actions apply, the client is closed with 1011, PHP logs the error).
 */
interface EventHandler
{
    /** The upgrade: $ev->reject() refuses; otherwise Server::events() accepts once this returns. */
    public function onOpen(Event $ev): void;

    /** A message from the client, or one published on a channel subscribed without forwarding ($ev->channel). */
    public function onMessage(Event $ev): void;

    /** The connection is gone ($ev->closeCode()); publish() and sendTo() still reach the others. */
    public function onClose(Event $ev): void;
}
