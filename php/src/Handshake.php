<?php

declare(strict_types=1);

namespace Wsfpm;

/**
 * The one answer a wsfpm upgrade request gives (101 or a refusal), and the
 * output hygiene both modes need: Connection (bound mode) and Event (events
 * mode) are two ways of giving that answer.
 *
 * @internal
 */
final class Handshake
{
    public const PROTOCOL_VERSION = '1';

    public const FATAL_ERRORS = E_ERROR | E_PARSE | E_CORE_ERROR | E_COMPILE_ERROR | E_USER_ERROR | E_RECOVERABLE_ERROR;

    /** A request has one response: it can be accepted or rejected once. */
    private static bool $answered = false;

    private function __construct()
    {
    }

    /**
     * @param string $caller what the script called, for the message, e.g. 'Connection::accept()'
     * @throws Exception outside a request made by the wsfpm daemon, or on a protocol mismatch
     */
    public static function assertProtocol(string $caller): void
    {
        $version = $_SERVER['WSFPM_PROTOCOL'] ?? null;
        if ($version === null) {
            throw new Exception(
                $caller . ' only works in a request made by the wsfpm daemon '
                . '($_SERVER[\'WSFPM_PROTOCOL\'] is not set): point the websocket at wsfpm, not at the web server'
            );
        }
        if ((string) $version !== self::PROTOCOL_VERSION) {
            throw new Exception(sprintf(
                'the wsfpm daemon speaks protocol %s but this library speaks %s: upgrade the older side',
                (string) $version,
                self::PROTOCOL_VERSION,
            ));
        }
    }

    public static function assertCanRespond(): void
    {
        if (self::$answered) {
            throw new Exception('this request was already accepted or rejected');
        }
        if (headers_sent($file, $line)) {
            throw new Exception("output started at $file:$line, so the response can no longer be a websocket upgrade");
        }
    }

    public static function markAnswered(): void
    {
        self::$answered = true;
    }

    /**
     * Make STDOUT safe for frames. Must run before the first byte of output.
     *
     * @throws Exception when an output buffer cannot be removed
     */
    public static function prepareOutput(): void
    {
        // PHP refuses the change once output started; gzip output would not be frames.
        @ini_set('zlib.output_compression', '0');
        // An HTML warning printed into STDOUT would land between frames; keep errors visible in the log instead.
        if (!in_array(strtolower((string) ini_get('display_errors')), ['', '0', 'off', 'no', 'false', 'stderr'], true)) {
            @ini_set('display_errors', '0');
            @ini_set('log_errors', '1');
        }
        self::dropOutputBuffers();
        if (ob_get_level() > 0) {
            throw new Exception('an output buffer that cannot be removed is active: it would hold frames back until the script ends');
        }
    }

    /** @return int bytes the buffers held */
    public static function dropOutputBuffers(): int
    {
        // Clean, not flush: what was printed is not a frame.
        $dropped = 0;
        while (ob_get_level() > 0) {
            $dropped += (int) ob_get_length();
            if (!@ob_end_clean()) {
                break;
            }
        }
        return $dropped;
    }

    /**
     * Validated before anything is sent, so a bad header cannot leave a half-made response.
     *
     * @param array<mixed> $headers
     * @return list<array{0: string, 1: bool}> header line and whether it replaces earlier ones
     */
    public static function headerLines(array $headers): array
    {
        $lines = [];
        foreach ($headers as $name => $values) {
            if (!is_string($name) || preg_match('/^[!#$%&\'*+.^_`|~0-9A-Za-z-]+$/D', $name) !== 1) {
                throw new Exception('headers are given as [name => value] with HTTP token names, e.g. [\'X-Foo\' => \'bar\']');
            }
            $first = true;
            foreach ((array) $values as $value) {
                if (!is_string($value) && !is_int($value)) {
                    throw new Exception("header $name: value must be a string");
                }
                $value = (string) $value;
                if (strpbrk($value, "\r\n\0") !== false) {
                    throw new Exception("header $name: value must not contain CR, LF or NUL");
                }
                $lines[] = ["$name: $value", $first];
                $first = false;
            }
        }
        return $lines;
    }

    /** @param list<array{0: string, 1: bool}> $lines from headerLines() */
    public static function sendHead(int $status, array $lines): void
    {
        http_response_code($status);
        foreach ($lines as [$line, $replace]) {
            header($line, $replace);
        }
    }

    /**
     * Refuse the upgrade with an HTTP response, then end the script.
     *
     * @param array<string, string|list<string>> $headers
     */
    public static function reject(int $status, string $body, array $headers): never
    {
        // 1xx is not a refusal (101 would be read as acceptance).
        if ($status < 200 || $status > 599) {
            throw new Exception("reject() needs an HTTP status between 200 and 599, got $status");
        }
        self::assertCanRespond();
        $lines = self::headerLines($headers);
        // Stray output before reject() would be glued in front of the body.
        self::dropOutputBuffers();
        self::$answered = true;

        self::sendHead($status, $lines);
        echo $body;
        self::finishRequest();
        exit;
    }

    /** Push everything to the daemon and end the FastCGI request; the script may run on. */
    public static function finishRequest(): void
    {
        flush();
        // Without this php-fpm holds the response until the daemon ends STDIN (bound mode never
        // does on its own), and an event's actions would wait for the script's own cleanup.
        if (function_exists('fastcgi_finish_request')) {
            fastcgi_finish_request();
        }
    }

    /** Whether the script is ending because of a fatal error or an uncaught exception. */
    public static function diedOfFatal(): bool
    {
        $error = error_get_last();
        return $error !== null && ($error['type'] & self::FATAL_ERRORS) !== 0;
    }

    /**
     * A byte count of at least $min from the daemon's parameters, or $default.
     *
     * @param array<mixed> $server $_SERVER, or a test's stand-in
     */
    public static function limit(array $server, string $name, int $default, int $min = 1): int
    {
        $value = (string) ($server[$name] ?? '');
        return preg_match('/^\d{1,18}$/D', $value) === 1 && (int) $value >= $min ? (int) $value : $default;
    }
}
