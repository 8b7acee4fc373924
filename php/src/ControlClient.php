<?php

declare(strict_types=1);

namespace Wsfpm;

/**
 * Talks to the daemon's control API (docs/protocol.md, "The control API"):
 * publish to channels, send to or close any connection, read presence.
 * For code that is not bound to a websocket: a page request, a cron job, a
 * queue worker. Plain PHP streams, one HTTP/1.1 request per call.
 *
 *     $control = new Wsfpm\ControlClient();                    // from WSFPM_CONTROL / WSFPM_CONTROL_TOKEN
 *     $control = new Wsfpm\ControlClient('tcp:127.0.0.1:8741', $token);
 *     $control->publish('room:1', 'hello');
 *
 * Wsfpm\Client has the same calls as static methods on a default instance.
 */
final class ControlClient
{
    /** The daemon's default --control address. */
    public const DEFAULT_ADDRESS = 'tcp:127.0.0.1:8741';

    /** Answers are small JSON documents; a connection list of a busy daemon is the largest. */
    private const MAX_RESPONSE = 64 * 1024 * 1024;

    private readonly string $address;

    private readonly ?string $token;

    /** What stream_socket_client() connects to. */
    private readonly string $target;

    private readonly string $hostHeader;

    /**
     * @param string|null $address tcp:HOST:PORT, tcp://HOST:PORT, HOST:PORT, unix:/path.sock or unix:///path.sock;
     *        default: $_SERVER['WSFPM_CONTROL'], then getenv('WSFPM_CONTROL'), then tcp:127.0.0.1:8741
     * @param string|null $token the daemon's --control-token; default: $_SERVER['WSFPM_CONTROL_TOKEN'], then getenv()
     * @param float $timeout seconds for connecting and, separately, for the whole answer
     * @throws Exception for an address it cannot parse
     */
    public function __construct(?string $address = null, ?string $token = null, private readonly float $timeout = 5.0)
    {
        $address ??= self::fromEnvironment('WSFPM_CONTROL') ?? self::DEFAULT_ADDRESS;
        $this->address = $address;
        $token ??= self::fromEnvironment('WSFPM_CONTROL_TOKEN');
        $this->token = $token === '' ? null : $token;
        [$this->target, $this->hostHeader] = self::parseAddress($address);
        if (!($timeout > 0)) {
            throw new Exception('the control API timeout must be more than 0 seconds');
        }
    }

    /** The address this client talks to, as given. */
    public function address(): string
    {
        return $this->address;
    }

    /**
     * Publish to every connection subscribed to $channel (their PHP scripts,
     * or their clients for a FORWARD subscription).
     *
     * @param string|null $exclude a connection id that must not get it (e.g. the sender's)
     * @return int how many connections it was delivered to
     * @throws Exception for an invalid channel, id or text; ControlException when the daemon refuses or cannot be reached
     */
    public function publish(string $channel, string $data, bool $binary = false, ?string $exclude = null): int
    {
        Frame::assertChannel($channel);
        $body = ['channel' => $channel] + self::data($data, $binary);
        if ($exclude !== null) {
            Frame::assertConnectionId($exclude);
            $body['exclude'] = $exclude;
        }
        return self::reached($this->request('POST', '/publish', $body));
    }

    /**
     * Send a message to the client of connection $id.
     *
     * @return int 1 if delivered, 0 if that connection is gone
     * @throws Exception for an invalid id or text; ControlException when the daemon refuses or cannot be reached
     */
    public function send(string $id, string $data, bool $binary = false): int
    {
        Frame::assertConnectionId($id);
        return self::reached($this->request('POST', '/send', ['id' => $id] + self::data($data, $binary)));
    }

    /**
     * Close connection $id with a close code and reason (cut to 123 bytes on a
     * character boundary): 1000 normal, 1001 going away, 1008 policy violation,
     * 1011 server error, 1012 restarting, 1013 try again later, or your own 3000-4999.
     *
     * @return int 1 if it was open, 0 if it was gone
     * @throws Exception for an invalid id, code or reason; ControlException when the daemon refuses or cannot be reached
     */
    public function close(string $id, int $code = 1000, string $reason = ''): int
    {
        Frame::assertConnectionId($id);
        // What the daemon's POST /close accepts: the codes that mean something when a server closes on its own.
        if (!in_array($code, [1000, 1001, 1008, 1011, 1012, 1013], true) && !($code >= 3000 && $code <= 4999)) {
            throw new Exception("close code $code cannot be sent through the control API; use 1000, 1001, 1008, 1011, 1012, 1013 or 3000-4999");
        }
        if (preg_match('//u', $reason) !== 1) {
            throw new Exception('a close reason must be valid UTF-8');
        }
        $reason = Frame::truncateUtf8($reason, Frame::MAX_CLOSE_REASON);
        return self::reached($this->request('POST', '/close', ['id' => $id, 'code' => $code, 'reason' => $reason]));
    }

    /**
     * The ids of the connections subscribed to $channel (presence).
     *
     * @return list<string>
     */
    public function members(string $channel): array
    {
        Frame::assertChannel($channel);
        $answer = $this->request('GET', '/channels/' . rawurlencode($channel));
        $members = $answer['members'] ?? null;
        if (!is_array($members)) {
            throw new ControlException('the control API answered GET /channels/ without a "members" list', 200);
        }
        return array_values(array_map('strval', $members));
    }

    /**
     * Every open connection on the daemon.
     *
     * @return list<array{id: string, path: string, ip: string, since: mixed, channels: list<string>}>
     */
    public function connections(): array
    {
        $answer = $this->request('GET', '/connections');
        $list = $answer['connections'] ?? null;
        if (!is_array($list)) {
            throw new ControlException('the control API answered GET /connections without a "connections" list', 200);
        }
        return array_values($list);
    }

    /** Whether the daemon answers GET /healthz (no token needed). Never throws. */
    public function healthy(): bool
    {
        try {
            return ($this->request('GET', '/healthz', null, false)['ok'] ?? false) === true;
        } catch (Exception) {
            return false;
        }
    }

    /**
     * One request to the control API, its JSON answer decoded.
     *
     * @param array<string, mixed>|null $body sent as JSON
     * @return array<string, mixed>
     * @throws ControlException
     */
    public function request(string $method, string $path, ?array $body = null, bool $authenticated = true): array
    {
        if ($authenticated && $this->token === null) {
            throw new ControlException(
                'no control token: pass it to new Wsfpm\ControlClient($address, $token) or set WSFPM_CONTROL_TOKEN '
                . '(the daemon\'s --control-token; bound websocket scripts get it as $_SERVER[\'WSFPM_CONTROL_TOKEN\'])'
            );
        }
        $json = $body === null ? null : json_encode($body, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_THROW_ON_ERROR);
        $lines = [
            "$method $path HTTP/1.1",
            'Host: ' . $this->hostHeader,
            'User-Agent: wsfpm-php',
            'Accept: application/json',
            'Connection: close',
        ];
        if ($authenticated) {
            $lines[] = 'Authorization: Bearer ' . $this->token;
        }
        if ($json !== null) {
            $lines[] = 'Content-Type: application/json';
            $lines[] = 'Content-Length: ' . strlen($json);
        }
        $raw = $this->exchange(implode("\r\n", $lines) . "\r\n\r\n" . ($json ?? ''), "$method $path");
        [$status, $answerBody] = self::parseResponse($raw, $this->address);
        $decoded = json_decode($answerBody, true);
        if ($status >= 200 && $status < 300) {
            if (!is_array($decoded)) {
                throw new ControlException("the control API at {$this->address} answered $method $path with something that is not a JSON object", $status);
            }
            return $decoded;
        }
        $error = is_array($decoded) && is_string($decoded['error'] ?? null) ? $decoded['error'] : trim(substr($answerBody, 0, 200));
        $code = is_array($decoded) && is_string($decoded['code'] ?? null) ? $decoded['code'] : null;
        $detail = $error . ($code !== null ? " ($code)" : '');
        throw match (true) {
            $status === 401 => new ControlException(
                "the control API at {$this->address} refused the token (401): WSFPM_CONTROL_TOKEN must be the daemon's --control-token",
                $status,
                $code,
            ),
            $status === 400 => new ControlException("the control API refused $method $path (400): $detail", $status, $code),
            $status === 413 => new ControlException("the control API refused $method $path (413): the message is over the daemon's --max-message", $status, $code),
            default => new ControlException("the control API answered $method $path with HTTP $status" . ($detail !== '' ? ": $detail" : ''), $status, $code),
        };
    }

    /** Writes the request, reads the whole answer (Connection: close). */
    private function exchange(string $request, string $what): string
    {
        $errno = 0;
        $errstr = '';
        $socket = @stream_socket_client($this->target, $errno, $errstr, $this->timeout, STREAM_CLIENT_CONNECT);
        if ($socket === false) {
            throw new ControlException(sprintf(
                'cannot reach the wsfpm control API at %s: %s; is wsfpm running with --control %s (WSFPM_CONTROL)?',
                $this->address,
                $errstr !== '' ? $errstr : "error $errno",
                $this->address,
            ));
        }
        try {
            $deadline = microtime(true) + $this->timeout;
            $this->setTimeout($socket, $deadline);
            for ($written = 0; $written < strlen($request); $written += $n) {
                $n = @fwrite($socket, substr($request, $written));
                if ($n === false || $n === 0) {
                    $this->failIfTimedOut($socket, $what);
                    throw new ControlException("the control API at {$this->address} closed the connection during $what");
                }
            }
            $raw = '';
            while (!feof($socket)) {
                $this->setTimeout($socket, $deadline);
                $chunk = @fread($socket, 65536);
                if ($chunk === false || $chunk === '') {
                    $this->failIfTimedOut($socket, $what);
                    if (microtime(true) >= $deadline) {
                        throw new ControlException("the control API at {$this->address} did not answer $what within {$this->timeout} s");
                    }
                    continue;
                }
                $raw .= $chunk;
                if (strlen($raw) > self::MAX_RESPONSE) {
                    throw new ControlException("the control API's answer to $what is over " . self::MAX_RESPONSE . ' bytes');
                }
            }
            return $raw;
        } finally {
            fclose($socket);
        }
    }

    /** @param resource $socket */
    private function setTimeout($socket, float $deadline): void
    {
        $left = max(0.001, $deadline - microtime(true));
        stream_set_timeout($socket, (int) $left, (int) (($left - (int) $left) * 1e6));
    }

    /** @param resource $socket */
    private function failIfTimedOut($socket, string $what): void
    {
        if ((stream_get_meta_data($socket)['timed_out'] ?? false) === true) {
            throw new ControlException("the control API at {$this->address} did not answer $what within {$this->timeout} s");
        }
    }

    /**
     * @return array{0: int, 1: string} status and body (chunked transfer coding undone)
     * @internal public for the tests
     */
    public static function parseResponse(string $raw, string $address = 'the daemon'): array
    {
        $end = strpos($raw, "\r\n\r\n");
        if ($end === false || preg_match('~^HTTP/1\.[01] (\d{3})~', $raw, $m) !== 1) {
            throw new ControlException("the control API at $address did not answer with HTTP" . ($raw === '' ? ' (empty answer)' : ''));
        }
        $status = (int) $m[1];
        $head = strtolower(substr($raw, 0, $end));
        $body = substr($raw, $end + 4);
        if (preg_match('/\r\ntransfer-encoding:[ \t]*chunked[ \t]*(\r\n|$)/', $head) === 1) {
            $body = self::unchunk($body, $address);
        } elseif (preg_match('/\r\ncontent-length:[ \t]*(\d+)/', $head, $cl) === 1) {
            if (strlen($body) < (int) $cl[1]) {
                throw new ControlException("the control API at $address closed the connection before the end of its answer", $status);
            }
            $body = substr($body, 0, (int) $cl[1]);
        }
        return [$status, $body];
    }

    private static function unchunk(string $body, string $address): string
    {
        $out = '';
        $pos = 0;
        for (;;) {
            $eol = strpos($body, "\r\n", $pos);
            if ($eol === false || preg_match('/^[0-9A-Fa-f]+/', substr($body, $pos, $eol - $pos), $m) !== 1) {
                throw new ControlException("the control API at $address sent a broken chunked answer");
            }
            $size = (int) hexdec($m[0]);
            if ($size === 0) {
                return $out;
            }
            if ($eol + 2 + $size > strlen($body)) {
                throw new ControlException("the control API at $address closed the connection before the end of its answer");
            }
            $out .= substr($body, $eol + 2, $size);
            $pos = $eol + 2 + $size + 2;
        }
    }

    /**
     * @return array{0: string, 1: string} stream_socket_client() target and Host header
     * @throws Exception
     * @internal public for the tests
     */
    public static function parseAddress(string $address): array
    {
        $a = trim($address);
        if (preg_match('~^unix:(?://)?(/.+)$~D', $a, $m) === 1 || preg_match('~^(/.+)$~D', $a, $m) === 1) {
            return ['unix://' . $m[1], 'localhost'];
        }
        $a = preg_replace('~^(tcp:(//)?|http://)~', '', $a) ?? $a;
        $a = rtrim($a, '/');
        if (preg_match('~^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$~D', $a, $m) === 1 && (int) $m[2] > 0 && (int) $m[2] < 65536) {
            return ["tcp://{$m[1]}:{$m[2]}", "{$m[1]}:{$m[2]}"];
        }
        throw new Exception(sprintf(
            'cannot use %s as the control API address: give tcp:HOST:PORT (e.g. tcp:127.0.0.1:8741) or unix:/path/to.sock, as in wsfpm --control',
            json_encode($address, JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE),
        ));
    }

    private static function fromEnvironment(string $name): ?string
    {
        $value = $_SERVER[$name] ?? $_ENV[$name] ?? getenv($name);
        return is_string($value) && $value !== '' ? $value : null;
    }

    /** @return array{data: string, binary: bool} */
    private static function data(string $data, bool $binary): array
    {
        if ($binary) {
            return ['data' => base64_encode($data), 'binary' => true];
        }
        if (preg_match('//u', $data) !== 1) {
            throw new Exception('a text message must be valid UTF-8; send it with $binary = true');
        }
        return ['data' => $data, 'binary' => false];
    }

    /** @param array<string, mixed> $answer */
    private static function reached(array $answer): int
    {
        $n = $answer['reached'] ?? null;
        if (!is_int($n)) {
            throw new ControlException('the control API answered without a "reached" count', 200);
        }
        return $n;
    }
}
