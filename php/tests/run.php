<?php

declare(strict_types=1);

// Framework-free tests of the codec, through Connection::fromStreams().
// Run: php php/tests/run.php  — last line is "N passed, M failed"; exit code 1 on failure.

require __DIR__ . '/../autoload.php';

use Wsfpm\Connection;
use Wsfpm\Exception;
use Wsfpm\Frame;
use Wsfpm\Handler;
use Wsfpm\InputSpool;
use Wsfpm\Message;
use Wsfpm\Server;

error_reporting(E_ALL);
set_error_handler(static function (int $no, string $msg, string $file, int $line): bool {
    if ((error_reporting() & $no) === 0) {
        return false; // silenced with @ on purpose
    }
    throw new ErrorException($msg, 0, $no, $file, $line);
});

$passed = 0;
$failed = 0;

function test(string $name, callable $fn): void
{
    global $passed, $failed;
    try {
        $fn();
        $passed++;
    } catch (Throwable $e) {
        $failed++;
        echo "FAIL $name: ", get_class($e), ': ', $e->getMessage(), ' at ', basename($e->getFile()), ':', $e->getLine(), "\n";
    }
}

function check(bool $ok, string $what = 'assertion'): void
{
    if (!$ok) {
        throw new RuntimeException("$what failed");
    }
}

function same(mixed $expected, mixed $actual, string $what = 'value'): void
{
    if ($expected !== $actual) {
        throw new RuntimeException(sprintf('%s: expected %s, got %s', $what, show($expected), show($actual)));
    }
}

function show(mixed $v): string
{
    if (is_string($v)) {
        return strlen($v) > 80 ? '"' . bin2hex(substr($v, 0, 40)) . '…" (' . strlen($v) . ' bytes)' : json_encode($v, JSON_INVALID_UTF8_SUBSTITUTE) . ' / ' . bin2hex($v);
    }
    return var_export($v, true);
}

function throws(callable $fn, string $contains = ''): void
{
    try {
        $fn();
    } catch (Exception $e) {
        if ($contains !== '' && !str_contains($e->getMessage(), $contains)) {
            throw new RuntimeException("exception message lacks '$contains': " . $e->getMessage());
        }
        return;
    }
    throw new RuntimeException('expected a Wsfpm\\Exception');
}

/** @return resource */
function memstream(string $bytes = '')
{
    $s = fopen('php://temp', 'w+b');
    fwrite($s, $bytes);
    rewind($s);
    return $s;
}

/** @param resource $s */
function contents($s): string
{
    rewind($s);
    return (string) stream_get_contents($s);
}

/** A connection reading $input, writing to a fresh memory stream. @return array{0: Connection, 1: resource} */
function conn(string $input = '', int $max = 1024): array
{
    $out = memstream();
    return [Connection::fromStreams(memstream($input), $out, 'abc', $max), $out];
}

/**
 * Hands out at most a few bytes per read, like a socket does, so frames
 * arrive split across fread() calls.
 */
final class TrickleStream
{
    public static string $data = '';
    public static int $reads = 0;
    private int $pos = 0;
    /** @var resource|null */
    public $context;

    public function stream_open(string $path, string $mode, int $options, ?string &$opened): bool
    {
        return true;
    }

    public function stream_read(int $count): string
    {
        self::$reads++;
        $n = min($count, 1 + self::$reads % 3);
        $chunk = substr(self::$data, $this->pos, $n);
        $this->pos += strlen($chunk);
        return $chunk;
    }

    public function stream_eof(): bool
    {
        return $this->pos >= strlen(self::$data);
    }

    public function stream_set_option(int $option, int $arg1, ?int $arg2): bool
    {
        return false;
    }
}
stream_wrapper_register('trickle', TrickleStream::class);

$C = fn (int $code, string $reason = ''): string => Frame::encode(Frame::CLOSE, pack('n', $code) . $reason);

// --- Frame ---

test('encode: type, big-endian length, payload', function (): void {
    same("\x01\x00\x00\x00\x05hello", Frame::encode(Frame::TEXT, 'hello'));
    same("\x00\x00\x00\x00\x00", Frame::encode(Frame::OPEN));
    same("\x02\x00\x01\x00\x00", substr(Frame::encode(Frame::BINARY, str_repeat('x', 65536)), 0, 5));
});

test('decodeHeader reads u32 above 2^31 as unsigned', function (): void {
    same([0x08, 0xFFFFFFFF], Frame::decodeHeader("\x08\xFF\xFF\xFF\xFF"));
    same([0x02, 258], Frame::decodeHeader("\x02\x00\x00\x01\x02"));
    throws(fn () => Frame::decodeHeader("\x01\x00"));
});

test('constants match the protocol', function (): void {
    same([0, 1, 2, 8], [Frame::OPEN, Frame::TEXT, Frame::BINARY, Frame::CLOSE]);
});

test('close payload parsing', function (): void {
    same([1005, ''], Frame::parseClosePayload(''));
    same([1005, ''], Frame::parseClosePayload("\x03"));
    same([1000, ''], Frame::parseClosePayload("\x03\xE8"));
    same([4001, 'bye now'], Frame::parseClosePayload("\x0F\xA1bye now"));
});

test('utf-8 truncation never splits a character', function (): void {
    same('abc', Frame::truncateUtf8('abc', 123));
    $ascii = str_repeat('a', 123);
    same($ascii, Frame::truncateUtf8($ascii . 'b', 123));
    // 122 + 3-byte € = 125 bytes: the € does not fit and goes whole.
    same(str_repeat('a', 122), Frame::truncateUtf8(str_repeat('a', 122) . '€', 123));
    // 120 + € = 123 bytes fits exactly.
    same(str_repeat('a', 120) . '€', Frame::truncateUtf8(str_repeat('a', 120) . '€x', 123));
    // 4-byte characters: 30 of them = 120 bytes, the 31st would end at 124.
    $emoji = str_repeat('😀', 40);
    $cut = Frame::truncateUtf8($emoji, 123);
    same(120, strlen($cut));
    check(preg_match('//u', $cut) === 1, 'valid UTF-8');
    same('', Frame::truncateUtf8('€', 2));
});

test('sendable close codes', function (): void {
    foreach ([1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4000, 4999] as $ok) {
        check(Frame::isSendableCloseCode($ok), "$ok sendable");
    }
    foreach ([0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] as $bad) {
        check(!Frame::isSendableCloseCode($bad), "$bad not sendable");
    }
});

// --- send / close ---

test('send writes one text or binary frame', function (): void {
    [$ws, $out] = conn();
    $ws->send('hello');
    $ws->send("\x00\xFF", true);
    $ws->send('');
    same("\x01\x00\x00\x00\x05hello" . "\x02\x00\x00\x00\x02\x00\xFF" . "\x01\x00\x00\x00\x00", contents($out));
});

test('send refuses oversize messages, accepts exactly the limit', function (): void {
    [$ws, $out] = conn('', 10);
    $ws->send(str_repeat('a', 10));
    throws(fn () => $ws->send(str_repeat('a', 11)), 'limit');
    throws(fn () => $ws->send(str_repeat('a', 11), true), 'limit');
    same(15, strlen(contents($out)));
});

test('send refuses invalid UTF-8 as text but not as binary', function (): void {
    [$ws, $out] = conn();
    throws(fn () => $ws->send("\xC3\x28"), 'UTF-8');
    $ws->send("\xC3\x28", true);
    same("\x02\x00\x00\x00\x02\xC3\x28", contents($out));
});

test('close writes code and reason, then is idempotent', function (): void {
    [$ws, $out] = conn();
    $ws->close();
    same("\x08\x00\x00\x00\x02\x03\xE8", contents($out));
    $ws->close(4000, 'again');
    same(7, strlen(contents($out)));
    same(1000, $ws->closeCode());
});

test('close with reason; send after close throws; receive returns null', function (): void {
    [$ws, $out] = conn(Frame::encode(Frame::TEXT, 'never read'));
    $ws->close(4001, 'bye');
    same("\x08\x00\x00\x00\x05\x0F\xA1bye", contents($out));
    throws(fn () => $ws->send('x'), 'closed');
    same(null, $ws->receive());
    same(4001, $ws->closeCode());
    same('bye', $ws->closeReason());
});

test('close truncates long reasons on a UTF-8 boundary', function (): void {
    [$ws, $out] = conn();
    $ws->close(1001, str_repeat('a', 122) . 'ü' . str_repeat('b', 50));
    $bytes = contents($out);
    same(5 + 2 + 122, strlen($bytes));
    same([Frame::CLOSE, 124], Frame::decodeHeader(substr($bytes, 0, 5)));
    same(str_repeat('a', 122), $ws->closeReason());
});

test('close validates code and reason', function (): void {
    [$ws, $out] = conn();
    throws(fn () => $ws->close(1005), '1005');
    throws(fn () => $ws->close(1006));
    throws(fn () => $ws->close(2000));
    throws(fn () => $ws->close(5000));
    throws(fn () => $ws->close(1000, "\xFF"), 'UTF-8');
    same('', contents($out));
    same(null, $ws->closeCode());
});

// --- receive ---

test('receive text and binary messages in order', function (): void {
    [$ws] = conn(Frame::encode(Frame::TEXT, 'héllo') . Frame::encode(Frame::BINARY, "\x00\x01") . Frame::encode(Frame::TEXT, ''));
    $a = $ws->receive();
    check($a instanceof Message);
    same('héllo', $a->data);
    same(false, $a->binary);
    $b = $ws->receive();
    same("\x00\x01", $b->data);
    same(true, $b->binary);
    same('', $ws->receive()->data);
    same(null, $ws->closeCode(), 'open');
});

test('EOF without CLOSE means 1006, and stays null', function (): void {
    [$ws] = conn(Frame::encode(Frame::TEXT, 'a'));
    same('a', $ws->receive()->data);
    same(null, $ws->receive());
    same(1006, $ws->closeCode());
    same('', $ws->closeReason());
    same(null, $ws->receive());
    throws(fn () => $ws->send('x'), 'closed');
});

test('EOF in the middle of a header or payload means 1006', function (): void {
    [$ws] = conn("\x01\x00\x00");
    same(null, $ws->receive());
    same(1006, $ws->closeCode());
    [$ws] = conn("\x01\x00\x00\x00\x0Aabc");
    same(null, $ws->receive());
    same(1006, $ws->closeCode());
});

test('CLOSE from the client: code and reason recorded', function () use ($C): void {
    [$ws, $out] = conn($C(4001, 'gone') . Frame::encode(Frame::TEXT, 'after'));
    same(null, $ws->receive());
    same(4001, $ws->closeCode());
    same('gone', $ws->closeReason());
    same(null, $ws->receive(), 'nothing after CLOSE');
    $ws->close(1000);
    same('', contents($out), 'no reply to a client CLOSE');
});

test('empty CLOSE means 1005', function (): void {
    [$ws] = conn(Frame::encode(Frame::CLOSE));
    same(null, $ws->receive());
    same(1005, $ws->closeCode());
    same('', $ws->closeReason());
});

test('CLOSE with the 1006 the daemon relays', function () use ($C): void {
    [$ws] = conn($C(1006));
    same(null, $ws->receive());
    same(1006, $ws->closeCode());
});

test('unknown frame types are skipped', function () use ($C): void {
    $in = Frame::encode(0x10, 'channel stuff') . Frame::encode(Frame::OPEN) . Frame::encode(0x2F, str_repeat('t', 70000))
        . Frame::encode(0x03, '') . Frame::encode(Frame::TEXT, 'real') . $C(1000);
    [$ws] = conn($in, 100000);
    same('real', $ws->receive()->data);
    same(null, $ws->receive());
    same(1000, $ws->closeCode());
});

test('a frame over the limit is a protocol error: CLOSE 1002, null', function (): void {
    [$ws, $out] = conn(Frame::encode(Frame::TEXT, str_repeat('x', 11)) . Frame::encode(Frame::TEXT, 'ok'), 10);
    same(null, $ws->receive());
    same(1002, $ws->closeCode());
    $bytes = contents($out);
    same(Frame::CLOSE, ord($bytes[0]));
    same(1002, unpack('n', substr($bytes, 5, 2))[1]);
    same(null, $ws->receive());
    // Only the header was read: the payload of a doubtful length is never trusted.
});

test('the limit applies to unknown types and to a huge u32 length', function (): void {
    [$ws] = conn("\x10\xFF\xFF\xFF\xFF", 10);
    same(null, $ws->receive());
    same(1002, $ws->closeCode());
    [$ws] = conn(Frame::encode(Frame::BINARY, str_repeat('x', 10)), 10);
    same(10, strlen($ws->receive()->data), 'exactly the limit is fine');
});

test('frames split across many short reads', function () use ($C): void {
    $big = random_bytes(5000);
    TrickleStream::$data = Frame::encode(Frame::TEXT, 'hello') . Frame::encode(0x11, 'skip me')
        . Frame::encode(Frame::BINARY, $big) . $C(1001, 'away');
    TrickleStream::$reads = 0;
    $in = fopen('trickle://x', 'rb');
    stream_set_read_buffer($in, 0);
    $ws = Connection::fromStreams($in, memstream(), 'id', 10000);
    same('hello', $ws->receive()->data);
    $m = $ws->receive();
    same(true, $m->binary);
    check($m->data === $big, 'binary payload intact');
    same(null, $ws->receive());
    same(1001, $ws->closeCode());
    same('away', $ws->closeReason());
    check(TrickleStream::$reads > 2000, 'really was split (' . TrickleStream::$reads . ' reads)');
});

test('id() and fromStreams() argument check', function (): void {
    [$ws] = conn();
    same('abc', $ws->id());
    throws(fn () => Connection::fromStreams('nope', 'nope'));
});

// --- Server ---

final class RecordingHandler implements Handler
{
    /** @var list<string> */
    public array $log = [];

    public function onOpen(Connection $conn): void
    {
        $this->log[] = 'open';
    }

    public function onMessage(Connection $conn, Message $msg): void
    {
        if ($msg->data === 'throw') {
            throw new LogicException('boom secret');
        }
        $this->log[] = 'msg ' . $msg->data;
        $conn->send($msg->data, $msg->binary);
    }

    public function onClose(Connection $conn, int $code, string $reason): void
    {
        $this->log[] = "close $code $reason";
    }

    public function onError(Connection $conn, Throwable $e): void
    {
        $this->log[] = 'error ' . get_class($e);
    }
}

test('Server::serve echoes and reports the client close', function () use ($C): void {
    [$ws, $out] = conn(Frame::encode(Frame::TEXT, 'a') . Frame::encode(Frame::BINARY, 'b') . $C(4002, 'bye'));
    $h = new RecordingHandler();
    Server::serve($ws, $h);
    same(['open', 'msg a', 'msg b', 'close 4002 bye'], $h->log);
    same(Frame::encode(Frame::TEXT, 'a') . Frame::encode(Frame::BINARY, 'b'), contents($out));
});

test('Server::serve: a throwing callback gets onError, 1011, onClose', function (): void {
    [$ws, $out] = conn(Frame::encode(Frame::TEXT, 'throw') . Frame::encode(Frame::TEXT, 'not reached'));
    $h = new RecordingHandler();
    Server::serve($ws, $h);
    same(['open', 'error LogicException', 'close 1011 internal error'], $h->log);
    $bytes = contents($out);
    same(Frame::encode(Frame::CLOSE, pack('n', 1011) . 'internal error'), $bytes);
    check(!str_contains($bytes, 'secret'), 'exception text not sent');
});

test('Server::serve: EOF gives onClose 1006', function (): void {
    [$ws] = conn();
    $h = new RecordingHandler();
    Server::serve($ws, $h);
    same(['open', 'close 1006 '], $h->log);
});

// --- InputSpool ---

/** @return array{0: resource, 1: string} a php://temp stream forced onto disk, and its file */
function spooledTemp(int $bytes): array
{
    $s = fopen('php://temp/maxmemory:0', 'w+b');
    $chunk = str_repeat('z', 65536);
    for ($i = 0; $i < intdiv($bytes, 65536); $i++) {
        fwrite($s, $chunk);
    }
    foreach (scandir('/proc/self/fd') as $fd) {
        clearstatcache(true, "/proc/self/fd/$fd");
        $t = preg_match('/^\d+$/D', $fd) === 1 ? @readlink("/proc/self/fd/$fd") : false;
        if ($t !== false && str_starts_with(basename($t), 'php') && @filesize("/proc/self/fd/$fd") === $bytes) {
            return [$s, "/proc/self/fd/$fd"];
        }
    }
    throw new RuntimeException('php://temp file not found');
}

function blocks(string $path): int
{
    clearstatcache(true, $path);
    return stat($path)['blocks'];
}

if (is_dir('/proc/self/fd')) {
    test('InputSpool punches out the spool file and the stream keeps working', function (): void {
        [$s, $path] = spooledTemp(8 << 20);
        fflush($s);
        check(blocks($path) * 512 >= 8 << 20, 'file was on disk before');
        fseek($s, 8 << 20);
        $spool = new InputSpool([sys_get_temp_dir()]);
        same(true, $spool->trim(8 << 20));
        check(blocks($path) * 512 < 1 << 20, 'disk use after trim: ' . blocks($path) * 512);
        clearstatcache(true, $path);
        same(8 << 20, filesize($path), 'size kept');
        // What php://input does next: append at the end, read from the current position.
        fseek($s, 0, SEEK_END);
        fwrite($s, 'fresh data');
        fseek($s, 8 << 20);
        same('fresh data', fread($s, 100));
        fclose($s);
    });

    test('InputSpool::consumed trims every 4 MiB, by size match only', function (): void {
        [$s, $path] = spooledTemp(4 << 20);
        fflush($s);
        $spool = new InputSpool([sys_get_temp_dir()]);
        $spool->consumed(1 << 20);
        check(blocks($path) * 512 >= 4 << 20, 'not trimmed before 4 MiB');
        $spool->consumed(4 << 20);
        check(blocks($path) * 512 < 1 << 20, 'trimmed at 4 MiB');
        fclose($s);
    });

    test('InputSpool leaves files alone when the size does not match or is ambiguous', function (): void {
        [$a, $pathA] = spooledTemp(1 << 20);
        $spool = new InputSpool([sys_get_temp_dir()]);
        same(false, $spool->trim(3 << 20), 'size mismatch');
        [$b] = spooledTemp(1 << 20);
        same(false, $spool->trim(1 << 20), 'two candidates');
        check(blocks($pathA) * 512 >= 1 << 20, 'untouched');
        fclose($a);
        fclose($b);
    });

    test('InputSpool ignores other directories', function (): void {
        [$s, $path] = spooledTemp(1 << 20);
        $spool = new InputSpool([__DIR__]);
        same(false, $spool->trim(1 << 20));
        fclose($s);
    });
}

test('InputSpool with no usable directory does nothing', function (): void {
    same(false, (new InputSpool(['/nonexistent/dir']))->trim(1));
});

// --- accept / reject in a child php-cli (they touch global state) ---

/** @return array{0: string, 1: string, 2: int} stdout, stderr, exit code */
function child(string $code, string $stdin = ''): array
{
    $file = tempnam(sys_get_temp_dir(), 'wsfpm-test-');
    file_put_contents($file, "<?php\ndeclare(strict_types=1);\nrequire " . var_export(__DIR__ . '/../autoload.php', true) . ";\n" . $code);
    $p = proc_open(
        [PHP_BINARY, '-n', '-d', 'display_errors=1', '-d', 'log_errors=0', $file],
        [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']],
        $pipes,
    );
    fwrite($pipes[0], $stdin);
    fclose($pipes[0]);
    $out = stream_get_contents($pipes[1]);
    $err = stream_get_contents($pipes[2]);
    $rc = proc_close($p);
    unlink($file);
    return [(string) $out, (string) $err, $rc];
}

$open = Frame::encode(Frame::OPEN);

test('accept() outside wsfpm throws a clear exception', function (): void {
    [$out] = child('try { Wsfpm\Connection::accept(); } catch (Wsfpm\Exception $e) { echo $e->getMessage(); }');
    check(str_contains($out, 'WSFPM_PROTOCOL'), $out);
    [$out] = child('$_SERVER["WSFPM_PROTOCOL"] = "2"; try { Wsfpm\Connection::accept(); } catch (Wsfpm\Exception $e) { echo $e->getMessage(); }');
    check(str_contains($out, 'protocol 2'), $out);
});

test('accept() drops buffered output, sends OPEN; second accept throws', function () use ($open): void {
    [$out, $err] = child('$_SERVER["WSFPM_PROTOCOL"] = "1"; $_SERVER["WSFPM_CONNECTION_ID"] = "c0ffee";
        ob_start(); echo "stray whitespace";
        $ws = Wsfpm\Connection::accept(["X-A" => "b"]);
        $ws->send($ws->id());
        try { Wsfpm\Connection::accept(); } catch (Wsfpm\Exception $e) { $ws->send("again"); }
        $ws->close(4000, "bye");');
    same($open . Frame::encode(Frame::TEXT, 'c0ffee') . Frame::encode(Frame::TEXT, 'again') . Frame::encode(Frame::CLOSE, pack('n', 4000) . 'bye'), $out, "stdout (stderr: $err)");
});

test('accept() rejects bad header names and values before sending anything', function (): void {
    [$out] = child('$_SERVER["WSFPM_PROTOCOL"] = "1";
        foreach ([["Bad Name" => "x"], ["X-A" => "a\r\nInjected: 1"], ["no-name"]] as $h) {
            try { Wsfpm\Connection::accept($h); } catch (Wsfpm\Exception $e) { echo "E"; }
        }');
    same('EEE', $out);
});

test('a fatal error after accept() sends CLOSE 1011 "internal error", not the error text', function () use ($open): void {
    [$out] = child('$_SERVER["WSFPM_PROTOCOL"] = "1";
        $ws = Wsfpm\Connection::accept();
        $ws->send("hi");
        ob_start(); echo "half a template";
        throw new RuntimeException("boom secret");');
    same($open . Frame::encode(Frame::TEXT, 'hi') . Frame::encode(Frame::CLOSE, pack('n', 1011) . 'internal error'), $out);
});

test('an undefined function call after accept() also ends in CLOSE 1011', function () use ($open): void {
    [$out] = child('$_SERVER["WSFPM_PROTOCOL"] = "1"; $ws = Wsfpm\Connection::accept(); wsfpm_no_such_function();');
    same($open . Frame::encode(Frame::CLOSE, pack('n', 1011) . 'internal error'), $out);
});

test('no CLOSE is added after a normal end or a clean close', function () use ($open): void {
    [$out] = child('$_SERVER["WSFPM_PROTOCOL"] = "1"; $ws = Wsfpm\Connection::accept(); $ws->send("x");');
    same($open . Frame::encode(Frame::TEXT, 'x'), $out);
    [$out] = child('$_SERVER["WSFPM_PROTOCOL"] = "1"; $ws = Wsfpm\Connection::accept(); $ws->close(); throw new Exception("late");');
    same($open . Frame::encode(Frame::CLOSE, "\x03\xE8"), $out);
});

test('a shutdown function registered after accept() can still close', function () use ($open): void {
    [$out] = child('$_SERVER["WSFPM_PROTOCOL"] = "1"; $ws = Wsfpm\Connection::accept();
        register_shutdown_function(fn () => $ws->close(4100, "from shutdown"));
        wsfpm_no_such_function();');
    same($open . Frame::encode(Frame::CLOSE, pack('n', 4100) . 'from shutdown'), $out);
});

test('reject() prints only the body and exits; validates status', function (): void {
    [$out, , $rc] = child('ob_start(); echo "stray"; Wsfpm\Connection::reject(403, "go away", ["X-Reason" => "test"]); echo "not reached";');
    same('go away', $out);
    same(0, $rc);
    [$out] = child('foreach ([101, 199, 600] as $s) { try { Wsfpm\Connection::reject($s); } catch (Wsfpm\Exception $e) { echo "E"; } }');
    same('EEE', $out);
});

echo "$passed passed, $failed failed\n";
exit($failed === 0 ? 0 : 1);
