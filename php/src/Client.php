<?php

declare(strict_types=1);

namespace Wsfpm;

/**
 * The control API in one line, from any PHP code: a page, a cron job, a
 * queue worker.
 *
 *     Wsfpm\Client::publish('room:1', json_encode($event));
 *     Wsfpm\Client::send($connectionId, 'your report is ready');
 *
 * The static calls use a ControlClient made on first use from the
 * environment ($_SERVER / getenv() WSFPM_CONTROL and WSFPM_CONTROL_TOKEN,
 * which the daemon gives bound scripts and its managed pool's workers).
 * For another daemon or explicit settings: Client::to($address, $token)
 * returns a ControlClient with the same methods.
 */
final class Client
{
    private static ?ControlClient $default = null;

    private function __construct()
    {
    }

    /**
     * A client for an explicit address and token.
     *
     * @see ControlClient::__construct()
     */
    public static function to(?string $address = null, ?string $token = null, float $timeout = 5.0): ControlClient
    {
        return new ControlClient($address, $token, $timeout);
    }

    /** The client the static methods use: made from the environment on first use, unless set with setInstance(). */
    public static function instance(): ControlClient
    {
        return self::$default ??= new ControlClient();
    }

    /** Make the static methods use $client (null: back to the environment's on next use). */
    public static function setInstance(?ControlClient $client): void
    {
        self::$default = $client;
    }

    /** @see ControlClient::publish() @return int connections reached */
    public static function publish(string $channel, string $data, bool $binary = false, ?string $exclude = null): int
    {
        return self::instance()->publish($channel, $data, $binary, $exclude);
    }

    /** @see ControlClient::send() @return int 1 delivered, 0 gone */
    public static function send(string $id, string $data, bool $binary = false): int
    {
        return self::instance()->send($id, $data, $binary);
    }

    /** @see ControlClient::close() @return int 1 closed, 0 gone */
    public static function close(string $id, int $code = 1000, string $reason = ''): int
    {
        return self::instance()->close($id, $code, $reason);
    }

    /**
     * @see ControlClient::members()
     * @return list<string> connection ids subscribed to $channel
     */
    public static function members(string $channel): array
    {
        return self::instance()->members($channel);
    }

    /**
     * @see ControlClient::connections()
     * @return list<array<string, mixed>>
     */
    public static function connections(): array
    {
        return self::instance()->connections();
    }
}
