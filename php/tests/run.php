<?php

declare(strict_types=1);

// Framework-free tests of the codec, through Connection::fromStreams() and Event::fromStreams();
// what needs a real request (shutdown, output buffers) runs in a child php-cli.
// Run: php php/tests/run.php  — last line is "N passed, M failed"; exit code 1 on failure.

require __DIR__ . '/../autoload.php';

use Wsfpm\ChannelHandler;
use Wsfpm\Client;
use Wsfpm\Connection;
use Wsfpm\ControlClient;
use Wsfpm\ControlException;
use Wsfpm\Event;
use Wsfpm\EventHandler;
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

test('side channel: frames queued together are read in one recv and handed out in order', function () use ($C): void {
    [$ours, $daemon] = stream_socket_pair(STREAM_PF_UNIX, STREAM_SOCK_STREAM, STREAM_IPPROTO_IP);
    $big = random_bytes(100000);
    fwrite($daemon, Frame::encode(Frame::TEXT, 'one') . Frame::encode(Frame::TEXT, 'two') . Frame::encode(0x11, 'skip me'));
    $out = memstream();
    $ws = Connection::fromStreams(memstream(), $out, 'id', 200000, $ours);
    check($ws->usesSideChannel(), 'uses the channel');
    check($ws->stream() === $ours, 'stream() is the channel');
    same('one', $ws->receive()->data);
    same('two', $ws->receive(0)->data, 'buffered: no select needed');
    same(false, $ws->receive(0), 'nothing more now');
    $ws->send('back');
    same(Frame::encode(Frame::TEXT, 'back'), fread($daemon, 100), 'send goes to the channel');
    same('', contents($out), 'not to STDOUT');
    fwrite($daemon, Frame::encode(Frame::BINARY, $big));
    $m = $ws->receive(5);
    check($m->binary && $m->data === $big, '100 KB binary intact across several recvs');
    fwrite($daemon, $C(1000, 'bye'));
    same(null, $ws->receive());
    same(1000, $ws->closeCode());
});

test('side channel: receive($timeout) returns false after about the timeout', function (): void {
    // Both ends kept: a freed $daemon would be EOF, not silence.
    [$ours, $daemon] = stream_socket_pair(STREAM_PF_UNIX, STREAM_SOCK_STREAM, STREAM_IPPROTO_IP);
    $ws = Connection::fromStreams(memstream(), memstream(), 'id', 1024, $ours);
    $t = microtime(true);
    same(false, $ws->receive(0.15));
    $took = microtime(true) - $t;
    check($took >= 0.14 && $took < 1.0, "waited $took s");
    throws(fn () => $ws->receive(-1), 'at least 0');
});

test('side channel: EOF from the daemon means 1006', function (): void {
    [$ours, $daemon] = stream_socket_pair(STREAM_PF_UNIX, STREAM_SOCK_STREAM, STREAM_IPPROTO_IP);
    fwrite($daemon, substr(Frame::encode(Frame::TEXT, 'cut'), 0, 6));
    fclose($daemon);
    $ws = Connection::fromStreams(memstream(), memstream(), 'id', 1024, $ours);
    same(null, $ws->receive());
    same(1006, $ws->closeCode());
});

test('side channel: frames fed byte by byte', function () use ($C): void {
    $big = random_bytes(3000);
    TrickleStream::$data = Frame::encode(Frame::TEXT, 'hello') . Frame::encode(Frame::BINARY, $big) . $C(1001, 'away');
    TrickleStream::$reads = 0;
    $ch = fopen('trickle://x', 'rb');
    stream_set_read_buffer($ch, 0);
    $ws = Connection::fromStreams(memstream(), memstream(), 'id', 10000, $ch);
    same('hello', $ws->receive()->data);
    check($ws->receive()->data === $big, 'binary payload intact');
    same(null, $ws->receive());
    same(1001, $ws->closeCode());
    check(TrickleStream::$reads > 1000, 'really was split (' . TrickleStream::$reads . ' reads)');
});

test('stream() without a channel says why and what to use', function (): void {
    [$ws] = conn();
    check(!$ws->usesSideChannel(), 'no channel');
    throws(fn () => $ws->stream(), 'receive($timeout)');
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

test('accept() in a message or close event of events mode points at Wsfpm\\Event', function (): void {
    foreach (['message', 'close'] as $event) {
        [$out] = child('$_SERVER["WSFPM_PROTOCOL"] = "1"; $_SERVER["WSFPM_EVENT"] = "' . $event . '";
            try { Wsfpm\Connection::accept(); } catch (Wsfpm\Exception $e) { echo $e->getMessage(); }');
        check(str_contains($out, "'$event' event") && str_contains($out, 'Wsfpm\Event::receive()'), $out);
    }
    [$out] = child('$_SERVER["WSFPM_PROTOCOL"] = "1"; $_SERVER["WSFPM_EVENT"] = "open"; Wsfpm\Connection::accept();');
    same(Frame::encode(Frame::OPEN), $out, 'an open event may still choose bound mode');
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

// --- channels, sends and timers: frames (golden bytes from docs/protocol.md) ---

$ID = str_repeat('0123456789abcdef', 2);

test('channel frame constants match the protocol', function (): void {
    same([0x10, 0x11, 0x12, 0x13, 0x14, 0x20, 0x21], [Frame::SUBSCRIBE, Frame::UNSUBSCRIBE, Frame::PUBLISH, Frame::SEND, Frame::CHANNEL, Frame::TIMER, Frame::TICK]);
    same([1, 1, 2], [Frame::FLAG_FORWARD, Frame::FLAG_BINARY, Frame::FLAG_EXCLUDE_SELF]);
});

test('SUBSCRIBE: flags(1) channel', function (): void {
    same("\x10\x00\x00\x00\x07\x00room:1", Frame::encode(Frame::SUBSCRIBE, Frame::subscribePayload('room:1')));
    same("\x10\x00\x00\x00\x07\x01room:1", Frame::encode(Frame::SUBSCRIBE, Frame::subscribePayload('room:1', true)));
    same("\x10\x00\x00\x00\x07\x03room:1", Frame::encode(Frame::SUBSCRIBE, Frame::subscribePayload('room:1', forward: true, history: true)));
    throws(fn () => Frame::subscribePayload('room:1', false, true), 'needs forward');
});

test('UNSUBSCRIBE: channel', function (): void {
    same("\x11\x00\x00\x00\x06room:1", Frame::encode(Frame::UNSUBSCRIBE, Frame::unsubscribePayload('room:1')));
});

test('PUBLISH: flags(1) channelLength(1) channel data', function (): void {
    same("\x12\x00\x00\x00\x0A\x00\x06room:1hi", Frame::encode(Frame::PUBLISH, Frame::publishPayload('room:1', 'hi')));
    same("\x12\x00\x00\x00\x0A\x01\x06room:1\x00\xFF", Frame::encode(Frame::PUBLISH, Frame::publishPayload('room:1', "\x00\xFF", true)));
    same("\x12\x00\x00\x00\x08\x02\x06room:1", Frame::encode(Frame::PUBLISH, Frame::publishPayload('room:1', '', false, true)));
    same("\x03\x01c", Frame::publishPayload('c', '', true, true));
    $long = str_repeat('x', 128);
    same("\x00\x80" . $long . 'd', Frame::publishPayload($long, 'd'));
});

test('SEND: flags(1) idLength(1) id data', function () use ($ID): void {
    same("\x13\x00\x00\x00\x24\x00\x20" . $ID . 'hi', Frame::encode(Frame::SEND, Frame::sendPayload($ID, 'hi')));
    same("\x01\x20" . $ID . "\xFF", Frame::sendPayload($ID, "\xFF", true));
});

test('TIMER: interval(4, BE, ms); 0 stops', function (): void {
    same("\x20\x00\x00\x00\x04\x00\x00\x03\xE8", Frame::encode(Frame::TIMER, Frame::timerPayload(1000)));
    same("\x20\x00\x00\x00\x04\x00\x00\x00\x00", Frame::encode(Frame::TIMER, Frame::timerPayload(0)));
    same("\x00\x00\x00\x0A", Frame::timerPayload(10));
    same("\xFF\xFF\xFF\xFF", Frame::timerPayload(0xFFFFFFFF));
    foreach ([1, 9, -1, 0x100000000] as $bad) {
        throws(fn () => Frame::timerPayload($bad), 'timer interval');
    }
});

test('CHANNEL parsing: flags(1) channelLength(1) channel data', function (): void {
    same(['room:1', 'hi', false], Frame::parseChannelPayload("\x00\x06room:1hi"));
    same(['c', "\x00\xFF", true], Frame::parseChannelPayload("\x01\x01c\x00\xFF"));
    same(['c', '', false], Frame::parseChannelPayload("\x00\x01c"));
    throws(fn () => Frame::parseChannelPayload(''), 'malformed');
    throws(fn () => Frame::parseChannelPayload("\x00"), 'malformed');
    throws(fn () => Frame::parseChannelPayload("\x00\x00data"), 'malformed');
    throws(fn () => Frame::parseChannelPayload("\x00\x07room:1"), 'malformed');
});

test('channel names: 1-128 bytes of A-Z a-z 0-9 _ . : @ / = , ; -', function (): void {
    foreach (['a', 'room:1', 'user@example.com/inbox', 'A-Z_a.z:0@9/-', 'presence-a=1,b;c', str_repeat('z', 128)] as $ok) {
        Frame::assertChannel($ok);
    }
    foreach (['', str_repeat('z', 129), 'a b', 'room#1', 'é', "a\0", "a\n", 'a*', 'a?b', 'a+b', '%41'] as $bad) {
        throws(fn () => Frame::assertChannel($bad), 'invalid channel name');
    }
});

test('connection ids: 32 lowercase hex characters', function () use ($ID): void {
    Frame::assertConnectionId($ID);
    foreach (['', 'abc', strtoupper($ID), substr($ID, 1), $ID . '0', str_repeat('g', 32), ' ' . substr($ID, 1)] as $bad) {
        throws(fn () => Frame::assertConnectionId($bad), 'invalid connection id');
    }
});

// --- channels, sends and timers: Connection ---

test('subscribe, unsubscribe, publish, sendTo, every write their frames', function () use ($ID): void {
    [$ws, $out] = conn();
    $ws->subscribe('room:1');
    $ws->subscribe('news', true);
    $ws->publish('room:1', 'hello', false, true);
    $ws->publish('room:1', "\x00\x01", true);
    $ws->sendTo($ID, 'psst');
    $ws->every(250);
    $ws->every(0);
    $ws->unsubscribe('news');
    same(
        "\x10\x00\x00\x00\x07\x00room:1"
        . "\x10\x00\x00\x00\x05\x01news"
        . "\x12\x00\x00\x00\x0D\x02\x06room:1hello"
        . "\x12\x00\x00\x00\x0A\x01\x06room:1\x00\x01"
        . "\x13\x00\x00\x00\x26\x00\x20" . $ID . 'psst'
        . "\x20\x00\x00\x00\x04\x00\x00\x00\xFA"
        . "\x20\x00\x00\x00\x04\x00\x00\x00\x00"
        . "\x11\x00\x00\x00\x04news",
        contents($out),
    );
    same(['room:1' => false], $ws->subscriptions());
});

test('unsubscribe from a channel never subscribed sends nothing; resubscribing changes FORWARD', function (): void {
    [$ws, $out] = conn();
    $ws->unsubscribe('never');
    same('', contents($out));
    $ws->subscribe('a');
    $ws->subscribe('a', true);
    same(['a' => true], $ws->subscriptions());
    same("\x10\x00\x00\x00\x02\x00a\x10\x00\x00\x00\x02\x01a", contents($out));
});

test('invalid channels, ids, intervals and text are refused before anything is written', function () use ($ID): void {
    [$ws, $out] = conn();
    throws(fn () => $ws->subscribe('bad name'), 'invalid channel name');
    throws(fn () => $ws->subscribe(''), 'invalid channel name');
    throws(fn () => $ws->unsubscribe(str_repeat('x', 129)), 'invalid channel name');
    throws(fn () => $ws->publish('room#1', 'x'), 'invalid channel name');
    throws(fn () => $ws->publish('room', "\xC3\x28"), 'UTF-8');
    throws(fn () => $ws->sendTo('ABC', 'x'), 'invalid connection id');
    throws(fn () => $ws->sendTo(strtoupper($ID), 'x'), 'invalid connection id');
    throws(fn () => $ws->sendTo($ID, "\xFF"), 'UTF-8');
    throws(fn () => $ws->every(9), 'timer interval');
    throws(fn () => $ws->every(-5), 'timer interval');
    same('', contents($out));
    same([], $ws->subscriptions());
});

test('publish and sendTo: the frame limit counts the channel name or id', function () use ($ID): void {
    [$ws, $out] = conn('', 40);
    $ws->publish('c', str_repeat('a', 37));                      // 2 + 1 + 37 = 40
    throws(fn () => $ws->publish('c', str_repeat('a', 38)), 'limit');
    throws(fn () => $ws->publish('c', str_repeat('a', 41)), 'limit');
    $ws->sendTo($ID, str_repeat('b', 6));                         // 2 + 32 + 6 = 40
    throws(fn () => $ws->sendTo($ID, str_repeat('b', 7)), 'limit');
    same(45 + 45, strlen(contents($out)));
});

test('channel calls on a closed connection throw', function () use ($ID): void {
    [$ws, $out] = conn();
    $ws->close();
    throws(fn () => $ws->subscribe('a'), 'closed');
    throws(fn () => $ws->publish('a', 'x'), 'closed');
    throws(fn () => $ws->sendTo($ID, 'x'), 'closed');
    throws(fn () => $ws->every(100), 'closed');
    same(7, strlen(contents($out)));
});

$CH = fn (string $channel, string $data, bool $binary = false): string =>
    Frame::encode(Frame::CHANNEL, chr($binary ? 1 : 0) . chr(strlen($channel)) . $channel . $data);
$TICK = Frame::encode(Frame::TICK);

test('receive: channel messages of a subscribed channel, in order with client messages', function () use ($CH, $C): void {
    [$ws] = conn(Frame::encode(Frame::TEXT, 'from client') . $CH('room:1', 'from room') . $CH('room:1', "\x00\xFF", true) . $C(1000));
    $ws->subscribe('room:1');
    $a = $ws->receive();
    same(['from client', false, null, false, true], [$a->data, $a->binary, $a->channel, $a->tick, $a->fromClient()]);
    $b = $ws->receive();
    same(['from room', false, 'room:1', false, false], [$b->data, $b->binary, $b->channel, $b->tick, $b->fromClient()]);
    $c = $ws->receive();
    same(["\x00\xFF", true, 'room:1'], [$c->data, $c->binary, $c->channel]);
    same(null, $ws->receive());
    same(1000, $ws->closeCode());
});

test('receive drops channel messages it did not ask for: unsubscribed, forwarded, never subscribed', function () use ($CH): void {
    [$ws] = conn($CH('gone', 'late') . $CH('fwd', 'x') . $CH('other', 'x') . $CH('mine', 'yes') . Frame::encode(Frame::TEXT, 'end'));
    $ws->subscribe('gone');
    $ws->unsubscribe('gone');
    $ws->subscribe('fwd', true);
    $ws->subscribe('mine');
    $m = $ws->receive();
    same(['yes', 'mine'], [$m->data, $m->channel]);
    same('end', $ws->receive()->data);
});

test('receive: ticks only while a timer runs', function () use ($TICK): void {
    [$ws] = conn($TICK . Frame::encode(Frame::TEXT, 'a') . $TICK . $TICK . Frame::encode(Frame::TEXT, 'b') . $TICK . Frame::encode(Frame::TEXT, 'c'));
    same('a', $ws->receive()->data, 'a tick before every() is dropped');
    $ws->every(10);
    $t = $ws->receive();
    same([true, '', false, null, false], [$t->tick, $t->data, $t->binary, $t->channel, $t->fromClient()]);
    same(true, $ws->receive()->tick);
    same('b', $ws->receive()->data);
    $ws->every(0);
    same('c', $ws->receive()->data, 'a tick after every(0) is dropped');
});

test('a plain echo loop never echoes ticks or channel messages it did not ask for', function () use ($TICK, $CH, $C): void {
    [$ws, $out] = conn($TICK . $CH('room', 'x') . Frame::encode(Frame::TEXT, 'hi') . $TICK . $C(1000));
    while (($msg = $ws->receive()) !== null) {
        $ws->send('echo: ' . $msg->data);
    }
    same(Frame::encode(Frame::TEXT, 'echo: hi'), contents($out));
});

test('a CHANNEL frame may carry a full-size message plus its channel name', function () use ($CH): void {
    $name = str_repeat('n', 128);
    [$ws] = conn($CH($name, str_repeat('x', 200)) . Frame::encode(Frame::TEXT, 'after'), 200);
    $ws->subscribe($name);
    same(200, strlen($ws->receive()->data));
    same('after', $ws->receive()->data);
    [$ws] = conn($CH('c', str_repeat('x', 200 + 128)), 200);
    $ws->subscribe('c');
    same(null, $ws->receive());
    same(1002, $ws->closeCode());
});

test('a malformed CHANNEL frame is a protocol error: CLOSE 1002', function (): void {
    [$ws, $out] = conn(Frame::encode(Frame::CHANNEL, "\x00\x09short") . Frame::encode(Frame::TEXT, 'never'));
    $ws->subscribe('short');
    same(null, $ws->receive());
    same(1002, $ws->closeCode());
    same(Frame::encode(Frame::CLOSE, pack('n', 1002) . 'malformed frame'), substr(contents($out), -22));
});

test('channel frames and ticks split across many short reads', function () use ($CH, $TICK, $C): void {
    TrickleStream::$data = $CH('room/a', 'one') . $TICK . $CH('room/a', str_repeat('ü', 500)) . $C(1000);
    TrickleStream::$reads = 0;
    $in = fopen('trickle://y', 'rb');
    stream_set_read_buffer($in, 0);
    $ws = Connection::fromStreams($in, memstream(), 'id', 10000);
    $ws->subscribe('room/a');
    $ws->every(50);
    same('one', $ws->receive()->data);
    same(true, $ws->receive()->tick);
    same(str_repeat('ü', 500), $ws->receive()->data);
    same(null, $ws->receive());
});

// --- ChannelHandler ---

final class RecordingChannelHandler implements ChannelHandler
{
    /** @var list<string> */
    public array $log = [];

    public function onOpen(Connection $conn): void
    {
        $conn->subscribe('room');
        $conn->every(1000);
        $this->log[] = 'open';
    }

    public function onMessage(Connection $conn, Message $msg): void
    {
        $this->log[] = 'msg ' . $msg->data;
    }

    public function onChannel(Connection $conn, string $channel, Message $msg): void
    {
        if ($msg->data === 'throw') {
            throw new LogicException('boom');
        }
        $this->log[] = "channel $channel " . $msg->data;
    }

    public function onTimer(Connection $conn): void
    {
        $this->log[] = 'tick';
    }

    public function onClose(Connection $conn, int $code, string $reason): void
    {
        $this->log[] = "close $code";
    }

    public function onError(Connection $conn, Throwable $e): void
    {
        $this->log[] = 'error ' . $e->getMessage();
    }
}

test('Server::serve dispatches channel messages and ticks to a ChannelHandler', function () use ($CH, $TICK, $C): void {
    [$ws] = conn(Frame::encode(Frame::TEXT, 'a') . $CH('room', 'r1') . $TICK . Frame::encode(Frame::TEXT, 'b') . $C(1001));
    $h = new RecordingChannelHandler();
    Server::serve($ws, $h);
    same(['open', 'msg a', 'channel room r1', 'tick', 'msg b', 'close 1001'], $h->log);
});

test('a ChannelHandler that throws in onChannel gets onError, 1011, onClose', function () use ($CH): void {
    [$ws, $out] = conn($CH('room', 'throw') . $CH('room', 'not reached'));
    $h = new RecordingChannelHandler();
    Server::serve($ws, $h);
    same(['open', 'error boom', 'close 1011'], $h->log);
    check(str_ends_with(contents($out), Frame::encode(Frame::CLOSE, pack('n', 1011) . 'internal error')));
});

test('a plain Handler that subscribed gets channel messages and ticks in onMessage', function () use ($CH, $TICK): void {
    [$ws] = conn($CH('room', 'r') . $TICK . Frame::encode(Frame::TEXT, 'c'));
    $ws->subscribe('room');
    $ws->every(10);
    $h = new class implements Handler {
        /** @var list<string> */
        public array $log = [];
        public function onOpen(Connection $conn): void {}
        public function onMessage(Connection $conn, Message $msg): void { $this->log[] = ($msg->channel ?? ($msg->tick ? 'tick' : 'client')) . ':' . $msg->data; }
        public function onClose(Connection $conn, int $code, string $reason): void {}
        public function onError(Connection $conn, Throwable $e): void {}
    };
    Server::serve($ws, $h);
    same(['room:r', 'tick:', 'client:c'], $h->log);
});

test('Message stays constructible with two arguments', function (): void {
    $m = new Message('x', true);
    same(['x', true, null, false, true], [$m->data, $m->binary, $m->channel, $m->tick, $m->fromClient()]);
});

// --- events mode: frames (golden bytes from docs/protocol.md, "Events mode") ---

test('META is 0x30; the OPEN payload of events mode is mode(1) = 0x01, batch(2, BE)', function (): void {
    same(0x30, Frame::META);
    same("\x01\x00\x01", Frame::openPayload(1));
    same("\x01\x00\x10", Frame::openPayload(16));
    same("\x01\x01\x00", Frame::openPayload(256));
    foreach ([0, -1, 257, 65536] as $bad) {
        throws(fn () => Frame::openPayload($bad), 'batch');
    }
});

test('splitFrames: a whole body into frames; cut short or over the limit throws', function (): void {
    same([], Frame::splitFrames('', 10));
    same([[Frame::TEXT, 'a'], [Frame::BINARY, ''], [0x7F, 'xyz']], Frame::splitFrames("\x01\x00\x00\x00\x01a\x02\x00\x00\x00\x00\x7F\x00\x00\x00\x03xyz", 10));
    same([[Frame::CHANNEL, "\x00\x01c" . str_repeat('x', 10)]], Frame::splitFrames(Frame::encode(Frame::CHANNEL, "\x00\x01c" . str_repeat('x', 10)), 10), 'CHANNEL: message plus its name');
    throws(fn () => Frame::splitFrames("\x01\x00\x00", 10), 'header is cut short');
    throws(fn () => Frame::splitFrames("\x01\x00\x00\x00\x05abc", 10), 'payload is cut short');
    throws(fn () => Frame::splitFrames(Frame::encode(Frame::TEXT, str_repeat('x', 11)), 10), 'over the limit');
    throws(fn () => Frame::splitFrames("\x01\xFF\xFF\xFF\xFF", 10), 'over the limit');
});

// --- events mode: Event, from memory streams ---

/**
 * The events of one request: $event with $body and extra parameters, answering into a fresh memory stream.
 *
 * @param array<string, string> $server
 * @return array{0: list<Event>, 1: resource}
 */
function events(string $event, string $body = '', array $server = []): array
{
    $out = memstream();
    $server += ['WSFPM_EVENT' => $event, 'WSFPM_CONNECTION_ID' => str_repeat('0123456789abcdef', 2), 'WSFPM_MAX_MESSAGE' => '1024'];
    return [Event::fromStreams(memstream($body), $out, $server), $out];
}

/** What error_log() says while $fn runs. */
function logged(callable $fn): string
{
    $file = tempnam(sys_get_temp_dir(), 'wsfpm-log-');
    $saved = ini_set('error_log', $file);
    try {
        $fn();
    } finally {
        ini_set('error_log', (string) $saved);
    }
    $log = (string) file_get_contents($file);
    unlink($file);
    return $log;
}

$T = fn (string $data): string => Frame::encode(Frame::TEXT, $data);

test('open event: nothing is written before finish(), then OPEN(events, batch), the actions, META, in one write', function () use ($ID, $T): void {
    [[$ev], $out] = events('open');
    same(['open', '', false, null, null, '', $ID], [$ev->type, $ev->data, $ev->binary, $ev->channel, $ev->closeCode(), $ev->closeReason(), $ev->id()]);
    same([], $ev->meta(), 'no meta at open');
    $ev->accept(batch: 4);
    $ev->setMeta(['room' => 'lobby', 'n' => 0]);
    $ev->subscribe('user:7', forward: true);
    $ev->send('welcome');
    $ev->publish('room:lobby', 'joined', excludeSelf: true);
    $ev->sendTo($ID, "\x00", true);
    $ev->unsubscribe('old');
    same('', contents($out), 'buffered');
    same(['room' => 'lobby', 'n' => 0], $ev->meta(), 'meta() reflects setMeta()');
    $ev->finish();
    same(
        "\x00\x00\x00\x00\x03\x01\x00\x04"
        . "\x10\x00\x00\x00\x07\x01user:7"
        . "\x01\x00\x00\x00\x07welcome"
        . "\x12\x00\x00\x00\x12\x02\x0Aroom:lobbyjoined"
        . "\x13\x00\x00\x00\x23\x01\x20" . $ID . "\x00"
        . "\x11\x00\x00\x00\x03old"
        . "\x30\x00\x00\x00\x16" . '{"room":"lobby","n":0}',
        contents($out),
    );
    $ev->finish();
    same(130, strlen(contents($out)), 'finish() is idempotent');
    throws(fn () => $ev->send('late'), 'has ended');
    throws(fn () => $ev->setMeta([]), 'has ended');
    throws(fn () => $ev->close(), 'has ended');
});

test('open event: batch 1 by default; accept() checks batch and headers, and answers once', function (): void {
    [[$ev], $out] = events('open');
    throws(fn () => $ev->accept(batch: 0), 'batch');
    throws(fn () => $ev->accept(batch: 257), 'batch');
    throws(fn () => $ev->accept(['Bad Name' => 'x']), 'HTTP token');
    throws(fn () => $ev->accept(['X-A' => "a\r\nInjected: 1"]), 'CR, LF');
    same(false, $ev->accepted(), 'nothing accepted by a failed accept()');
    $ev->accept(['X-A' => 'b']);
    same(true, $ev->accepted());
    throws(fn () => $ev->accept(), 'already accepted');
    throws(fn () => $ev->reject(403), 'already accepted');
    $ev->finish();
    same("\x00\x00\x00\x00\x03\x01\x00\x01", contents($out));
});

test('open event left undecided: nothing written, and a log line if it had actions', function (): void {
    [[$ev], $out] = events('open');
    same('', logged(fn () => $ev->finish()));
    same('', contents($out));
    [[$ev], $out] = events('open');
    $ev->send('never sent');
    $log = logged(fn () => $ev->finish());
    check(str_contains($log, 'without Event::accept() or reject()'), $log);
    same('', contents($out));
});

test('message event: text, binary and channel messages of a batch, in order; meta from WSFPM_META', function () use ($T, $CH): void {
    [$all, $out] = events('message', $T('héllo') . Frame::encode(Frame::BINARY, "\x00\xFF") . Frame::encode(0x7E, 'unknown: skipped') . $CH('room:1', 'news', true), ['WSFPM_META' => '{"n":3,"room":"lobby"}']);
    same(3, count($all));
    [$a, $b, $c] = $all;
    same(['message', 'héllo', false, null, null], [$a->type, $a->data, $a->binary, $a->channel, $a->closeCode()]);
    same(['message', "\x00\xFF", true, null], [$b->type, $b->data, $b->binary, $b->channel]);
    same(['message', 'news', true, 'room:1'], [$c->type, $c->data, $c->binary, $c->channel]);
    same(['n' => 3, 'room' => 'lobby'], $a->meta());
    $a->finish();
    same('', contents($out), 'no actions, nothing written');
});

test('the events of a batch share meta and actions: the next sees setMeta(), one META goes out, the last', function () use ($T): void {
    [$all, $out] = events('message', $T('a') . $T('b') . $T('c'), ['WSFPM_META' => '{"n":0}']);
    foreach ($all as $ev) {
        $n = $ev->meta()['n'] + 1;
        $ev->setMeta(['n' => $n] + $ev->meta());
        $ev->send("#$n " . $ev->data);
    }
    same(['n' => 3], $all[0]->meta());
    $all[2]->finish();
    same($T('#1 a') . $T('#2 b') . $T('#3 c') . Frame::encode(Frame::META, '{"n":3}'), contents($out));
    throws(fn () => $all[0]->send('x'), 'has ended');
});

test('setMeta: exactly WSFPM_MAX_META bytes of JSON fit, one more throws; 4096 by default; [] clears', function (): void {
    [[$ev], $out] = events('message', Frame::encode(Frame::TEXT, 'x'), ['WSFPM_MAX_META' => '20', 'WSFPM_META' => '{"old":1}']);
    $ev->setMeta(['s' => str_repeat('a', 12)]);                 // {"s":"aaaaaaaaaaaa"} = 20 bytes
    throws(fn () => $ev->setMeta(['s' => str_repeat('a', 13)]), 'the limit is 20 (WSFPM_MAX_META)');
    same(['s' => str_repeat('a', 12)], $ev->meta(), 'a refused setMeta() changes nothing');
    $ev->setMeta([]);
    same([], $ev->meta());
    $ev->finish();
    same("\x30\x00\x00\x00\x00", contents($out), 'an empty META clears it');

    [[$ev]] = events('open');
    $ev->setMeta(['s' => str_repeat('a', 4096 - 8)]);
    throws(fn () => $ev->setMeta(['s' => str_repeat('a', 4096 - 7)]), 'the limit is 4096');
    [[$ev]] = events('open', '', ['WSFPM_MAX_META' => 'nonsense']);
    $ev->setMeta(['s' => str_repeat('a', 4096 - 8)]);
    [[$ev]] = events('open', '', ['WSFPM_MAX_META' => '0']);
    throws(fn () => $ev->setMeta(['n' => 1]), 'the limit is 0 (WSFPM_MAX_META)');
    $ev->setMeta([]);
});

test('meta: unicode and slashes stay short, floats stay floats; what JSON cannot hold throws', function (): void {
    [[$ev], $out] = events('open');
    $ev->accept();
    $ev->setMeta(['name' => 'Zoë', 'path' => '/a/b', 'f' => 1.0, 'list' => [1, 2]]);
    same(['name' => 'Zoë', 'path' => '/a/b', 'f' => 1.0, 'list' => [1, 2]], $ev->meta());
    throws(fn () => $ev->setMeta(['bad' => "\xFF"]), 'JSON-encodable');
    throws(fn () => $ev->setMeta(['inf' => INF]), 'JSON-encodable');
    $ev->finish();
    check(str_ends_with(contents($out), '{"name":"Zoë","path":"/a/b","f":1.0,"list":[1,2]}'), show(contents($out)));
});

test('meta: a WSFPM_META that is not a JSON object or array throws when read', function (): void {
    foreach (['not json', '42', '"text"', 'null'] as $bad) {
        [[$ev]] = events('message', Frame::encode(Frame::TEXT, 'x'), ['WSFPM_META' => $bad]);
        same('x', $ev->data, 'the event itself still parses');
        throws(fn () => $ev->meta(), 'WSFPM_META');
    }
    [[$ev]] = events('message', Frame::encode(Frame::TEXT, 'x'), ['WSFPM_META' => '[]']);
    same([], $ev->meta());
});

test('close event: the code and reason; 1005 for an empty CLOSE, 1006 for none', function () use ($C): void {
    [[$ev]] = events('close', $C(4001, 'bye now'));
    same(['close', '', 4001, 'bye now'], [$ev->type, $ev->data, $ev->closeCode(), $ev->closeReason()]);
    [[$ev]] = events('close', Frame::encode(Frame::CLOSE));
    same([1005, ''], [$ev->closeCode(), $ev->closeReason()]);
    [[$ev]] = events('close');
    same([1006, ''], [$ev->closeCode(), $ev->closeReason()]);
});

test('close event: calls aimed at the gone connection do nothing, publish and sendTo are written', function () use ($C, $ID): void {
    [[$ev], $out] = events('close', $C(1001), ['WSFPM_META' => '{"room":"lobby"}']);
    $ev->send('nobody hears this');
    $ev->subscribe('x');
    $ev->unsubscribe('x');
    $ev->close(4000);
    $ev->setMeta(['room' => 'gone']);
    same(['room' => 'gone'], $ev->meta(), 'still read back locally');
    $ev->publish('room:lobby', 'someone left');
    $ev->sendTo($ID, 'you were told');
    throws(fn () => $ev->send("\xFF"), 'UTF-8');
    throws(fn () => $ev->subscribe('bad name'), 'invalid channel name');
    throws(fn () => $ev->close(1006), 'may not be sent');
    same([1001, ''], [$ev->closeCode(), $ev->closeReason()]);
    $ev->finish();
    same(Frame::encode(Frame::PUBLISH, "\x00\x0Aroom:lobbysomeone left") . Frame::encode(Frame::SEND, "\x00\x20" . $ID . 'you were told'), contents($out));
});

test('close() in a message event: CLOSE goes last, later calls aimed at the client do nothing', function () use ($T): void {
    [[$ev], $out] = events('message', $T('quit'));
    $ev->send('bye');
    $ev->close(4000, str_repeat('r', 122) . 'ü');
    same([4000, str_repeat('r', 122)], [$ev->closeCode(), $ev->closeReason()], 'reason cut on a character boundary');
    $ev->close(1000);
    $ev->send('after close');
    $ev->publish('room', 'still goes out');
    $ev->setMeta(['closing' => true]);
    $ev->finish();
    same(
        $T('bye') . Frame::encode(Frame::PUBLISH, "\x00\x04roomstill goes out") . Frame::encode(Frame::META, '{"closing":true}')
        . Frame::encode(Frame::CLOSE, pack('n', 4000) . str_repeat('r', 122)),
        contents($out),
    );
});

test('invalid channels, ids, text, sizes and close codes are refused before anything is queued', function () use ($ID, $T): void {
    [[$ev], $out] = events('message', $T('x'), ['WSFPM_MAX_MESSAGE' => '40']);
    throws(fn () => $ev->subscribe(''), 'invalid channel name');
    throws(fn () => $ev->unsubscribe('a b'), 'invalid channel name');
    throws(fn () => $ev->publish('room#1', 'x'), 'invalid channel name');
    throws(fn () => $ev->publish('room', "\xC3\x28"), 'UTF-8');
    throws(fn () => $ev->sendTo('ABC', 'x'), 'invalid connection id');
    throws(fn () => $ev->send(str_repeat('a', 41)), 'limit is 40');
    throws(fn () => $ev->publish('c', str_repeat('a', 38)), 'counts the channel name');
    throws(fn () => $ev->sendTo($ID, str_repeat('b', 7)), 'counts the channel name or id');
    throws(fn () => $ev->close(1005), 'may not be sent');
    throws(fn () => $ev->close(1000, "\xFF"), 'UTF-8');
    $ev->send(str_repeat('a', 40));
    $ev->publish('c', str_repeat('a', 37));
    $ev->finish();
    same(45 + 45, strlen(contents($out)));
});

test('accept() and reject() belong to the open event', function () use ($T, $C): void {
    [[$ev]] = events('message', $T('x'));
    throws(fn () => $ev->accept(), "accept() is for the open event; this is a 'message' event");
    throws(fn () => $ev->reject(403), 'reject() is for the open event');
    [[$ev]] = events('close', $C(1000));
    throws(fn () => $ev->accept(), "'close' event");
});

test('malformed bodies and parameters throw: no message, cut short, over the limit, bad CHANNEL, unknown event', function () use ($T): void {
    throws(fn () => events('message'), 'without a message');
    throws(fn () => events('message', Frame::encode(0x7E, 'x')), 'without a message');
    throws(fn () => events('message', "\x01\x00\x00\x00\x09abc"), 'cut short');
    throws(fn () => events('message', $T(str_repeat('x', 1025))), 'over the limit');
    throws(fn () => events('message', Frame::encode(Frame::CHANNEL, "\x00\x09short")), 'malformed CHANNEL');
    throws(fn () => events('upgrade'), "unknown WSFPM_EVENT 'upgrade'");
    throws(fn () => Event::fromStreams('no', 'no', []), 'stream resources');
});

// --- events mode: EventHandler and Server::events ---

final class RecordingEventHandler implements EventHandler
{
    /** @var list<string> */
    public array $log = [];

    public function __construct(private readonly int $ownBatch = 0)
    {
    }

    public function onOpen(Event $ev): void
    {
        $this->log[] = 'open';
        $ev->send('welcome');
        if ($this->ownBatch > 0) {
            $ev->accept(['X-Own' => '1'], $this->ownBatch);
        }
    }

    public function onMessage(Event $ev): void
    {
        $this->log[] = 'message ' . ($ev->channel ?? 'client') . ' ' . $ev->data;
        if ($ev->data === 'quit') {
            $ev->close(4000);
        }
        $ev->send('echo ' . $ev->data);
    }

    public function onClose(Event $ev): void
    {
        $this->log[] = 'close ' . $ev->closeCode();
        $ev->publish('room', 'left');
    }
}

test('Server::serveEvents: open runs onOpen, then accepts with the batch given', function (): void {
    [$events, $out] = events('open');
    $h = new RecordingEventHandler();
    Server::serveEvents($events, $h);
    $events[0]->finish();
    same(['open'], $h->log);
    same(Frame::encode(Frame::OPEN, "\x01\x00\x10") . Frame::encode(Frame::TEXT, 'welcome'), contents($out), 'batch 16 by default');
    [$events, $out] = events('open');
    Server::serveEvents($events, new RecordingEventHandler(), 1);
    $events[0]->finish();
    same(Frame::encode(Frame::OPEN, "\x01\x00\x01") . Frame::encode(Frame::TEXT, 'welcome'), contents($out));
    [$events] = events('open');
    $h = new RecordingEventHandler();
    throws(fn () => Server::serveEvents($events, $h, 300), 'batch');
    same([], $h->log, 'a bad batch is refused before onOpen()');
});

test('Server::serveEvents: an onOpen() that accepts itself keeps its own batch', function (): void {
    [$events, $out] = events('open');
    Server::serveEvents($events, new RecordingEventHandler(3));
    $events[0]->finish();
    same(Frame::encode(Frame::OPEN, "\x01\x00\x03") . Frame::encode(Frame::TEXT, 'welcome'), contents($out));
});

test('Server::serveEvents: one onMessage() per message of a batch; none after the handler closed', function () use ($T, $CH): void {
    [$events, $out] = events('message', $T('a') . $CH('news', 'n1') . $T('quit') . $T('not dispatched'));
    $h = new RecordingEventHandler();
    Server::serveEvents($events, $h);
    $events[0]->finish();
    same(['message client a', 'message news n1', 'message client quit'], $h->log);
    same($T('echo a') . $T('echo n1') . Frame::encode(Frame::CLOSE, pack('n', 4000)), contents($out));
});

test('Server::serveEvents: a close event runs onClose()', function () use ($C): void {
    [$events, $out] = events('close', $C(1001, 'going away'));
    $h = new RecordingEventHandler();
    Server::serveEvents($events, $h);
    $events[0]->finish();
    same(['close 1001'], $h->log);
    same(Frame::encode(Frame::PUBLISH, "\x00\x04roomleft"), contents($out));
});

// --- events mode: receive() and the end of the request, in a child php-cli ---

/** A child's code that prints, after everything else at shutdown, the status PHP would answer with. */
$STATUS = 'register_shutdown_function(static fn () => register_shutdown_function(static fn () => fwrite(STDERR, "status=" . var_export(http_response_code(), true))));';

test('Event::receive() outside wsfpm, or from a daemon without events mode, says so', function (): void {
    [$out] = child('try { Wsfpm\Event::receive(); } catch (Wsfpm\Exception $e) { echo $e->getMessage(); }');
    check(str_contains($out, 'Event::receive() only works in a request made by the wsfpm daemon'), $out);
    [$out] = child('$_SERVER["WSFPM_PROTOCOL"] = "1"; try { Wsfpm\Event::receive(); } catch (Wsfpm\Exception $e) { echo $e->getMessage(); }');
    check(str_contains($out, 'does not offer events mode'), $out);
});

test('open event: accept() drops earlier output; OPEN and the actions go out at the very end, after the script\'s shutdown functions', function () use ($STATUS): void {
    [$out, $err] = child('$_SERVER += ["WSFPM_PROTOCOL" => "1", "WSFPM_EVENT" => "open", "WSFPM_CONNECTION_ID" => "c0ffee"];
        ob_start(); echo "stray whitespace";
        $ev = Wsfpm\Event::receive();
        if (Wsfpm\Event::receive() !== $ev) { echo "not the same event"; }
        $ev->accept(["X-A" => "b"], 2);
        ' . $STATUS . '
        register_shutdown_function(fn () => $ev->send("from shutdown"));
        $ev->send($ev->id());
        echo "oops";');
    same(Frame::encode(Frame::OPEN, "\x01\x00\x02") . Frame::encode(Frame::TEXT, 'c0ffee') . Frame::encode(Frame::TEXT, 'from shutdown'), $out, "stdout (stderr: $err)");
    check(str_contains($err, 'dropped 4 bytes an event script printed'), $err);
    check(str_contains($err, 'status=101'), $err);
});

test('a fatal error or uncaught exception writes nothing and leaves a 500, in the open and in the close event', function () use ($STATUS): void {
    [$out, $err] = child('$_SERVER += ["WSFPM_PROTOCOL" => "1", "WSFPM_EVENT" => "open"];
        $ev = Wsfpm\Event::receive(); $ev->accept(); $ev->send("never"); ' . $STATUS . '
        throw new RuntimeException("boom secret");');
    same('', $out, "stdout (stderr: $err)");
    check(str_contains($err, 'PHP Fatal error:  Uncaught RuntimeException: boom secret'), $err);
    check(str_contains($err, 'status=500'), $err);
    [$out, $err] = child('$_SERVER += ["WSFPM_PROTOCOL" => "1", "WSFPM_EVENT" => "close"];
        $ev = Wsfpm\Event::receive(); $ev->publish("room", "left"); ' . $STATUS . '
        wsfpm_no_such_function();');
    same('', $out, "stdout (stderr: $err)");
    check(str_contains($err, 'status=500'), $err);
    [$out] = child('$_SERVER += ["WSFPM_PROTOCOL" => "1", "WSFPM_EVENT" => "close"];
        $ev = Wsfpm\Event::receive(); $ev->publish("room", "left");');
    same(Frame::encode(Frame::PUBLISH, "\x00\x04roomleft"), $out, 'the same event without the error');
});

test('an error status set by the script (a framework\'s exception handler) also writes nothing', function (): void {
    [$out] = child('$_SERVER += ["WSFPM_PROTOCOL" => "1", "WSFPM_EVENT" => "close"];
        set_exception_handler(static function (Throwable $e): void { http_response_code(500); echo "<h1>Oops</h1>"; });
        $ev = Wsfpm\Event::receive(); $ev->publish("room", "left");
        throw new RuntimeException("handled");');
    same('', $out);
});

test('reject() in the open event: only the body, the script ends, no actions', function () use ($STATUS): void {
    [$out, $err, $rc] = child('$_SERVER += ["WSFPM_PROTOCOL" => "1", "WSFPM_EVENT" => "open"];
        ob_start(); echo "stray";
        $ev = Wsfpm\Event::receive(); $ev->send("never"); ' . $STATUS . '
        $ev->reject(401, "log in first"); echo "not reached";');
    same('log in first', $out);
    same(0, $rc);
    check(str_contains($err, 'status=401') && !str_contains($err, 'wsfpm:'), $err);
});

test('a message or close event refuses to start once output was sent', function (): void {
    [$out] = child('$_SERVER += ["WSFPM_PROTOCOL" => "1", "WSFPM_EVENT" => "close"]; echo "x"; flush();
        try { Wsfpm\Event::receive(); } catch (Wsfpm\Exception $e) { echo $e->getMessage(); }');
    check(str_contains($out, 'before Event::receive()'), $out);
});

// --- ControlClient (against a tiny HTTP server in a child php-cli) ---

test('ControlClient::parseAddress', function (): void {
    same(['tcp://127.0.0.1:8741', '127.0.0.1:8741'], ControlClient::parseAddress('tcp:127.0.0.1:8741'));
    same(['tcp://127.0.0.1:8741', '127.0.0.1:8741'], ControlClient::parseAddress('tcp://127.0.0.1:8741'));
    same(['tcp://localhost:9', 'localhost:9'], ControlClient::parseAddress('localhost:9'));
    same(['tcp://localhost:9', 'localhost:9'], ControlClient::parseAddress('http://localhost:9/'));
    same(['tcp://[::1]:8741', '[::1]:8741'], ControlClient::parseAddress('tcp:[::1]:8741'));
    same(['unix:///run/wsfpm/control.sock', 'localhost'], ControlClient::parseAddress('unix:/run/wsfpm/control.sock'));
    same(['unix:///run/wsfpm/control.sock', 'localhost'], ControlClient::parseAddress('unix:///run/wsfpm/control.sock'));
    same(['unix:///run/c.sock', 'localhost'], ControlClient::parseAddress('/run/c.sock'));
    foreach (['', 'tcp:', '127.0.0.1', 'tcp:host:0', 'tcp:host:70000', 'unix:', 'udp://x:1', 'tcp:a b:1'] as $bad) {
        throws(fn () => ControlClient::parseAddress($bad), 'control API address');
    }
});

test('ControlClient::parseResponse: content-length, chunked, broken', function (): void {
    same([200, '{"reached":1}'], ControlClient::parseResponse("HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{\"reached\":1}"));
    same([400, '{"a":1}'], ControlClient::parseResponse("HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n"));
    same([204, ''], ControlClient::parseResponse("HTTP/1.0 204 No Content\r\n\r\n"));
    foreach (['', "garbage\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n"] as $bad) {
        try {
            ControlClient::parseResponse($bad);
            throw new RuntimeException('expected ControlException');
        } catch (ControlException) {
        }
    }
});

/**
 * A control API stand-in: answers each connection with the next canned
 * response and writes the raw requests it got to a file.
 *
 * @param list<array{0: int, 1: string}|null> $answers status and body; null: accept but never answer
 * @return array{0: string, 1: callable(): list<string>, 2: callable(): void} address, requests(), stop()
 */
function fakeControl(array $answers, bool $unix = false): array
{
    $dir = sys_get_temp_dir() . '/wsfpm-control-' . bin2hex(random_bytes(4));
    mkdir($dir);
    $log = "$dir/requests.json";
    $listen = $unix ? "unix://$dir/c.sock" : 'tcp://127.0.0.1:0';
    $code = '<?php
        $server = stream_socket_server(' . var_export($listen, true) . ', $e, $s);
        echo stream_socket_get_name($server, false), "\n";
        $requests = [];
        $held = [];
        foreach (' . var_export($answers, true) . ' as $answer) {
            $c = stream_socket_accept($server, 10);
            if ($c === false) break;
            $raw = "";
            while (!str_contains($raw, "\r\n\r\n") && ($chunk = fread($c, 8192)) !== "" && $chunk !== false) { $raw .= $chunk; }
            if (preg_match("/content-length: (\d+)/i", $raw, $m)) {
                $want = strpos($raw, "\r\n\r\n") + 4 + (int) $m[1];
                while (strlen($raw) < $want && ($chunk = fread($c, 8192)) !== "" && $chunk !== false) { $raw .= $chunk; }
            }
            $requests[] = $raw;
            file_put_contents(' . var_export($log, true) . ', json_encode($requests));
            if ($answer === null) { $held[] = $c; continue; }
            fwrite($c, "HTTP/1.1 {$answer[0]} X\r\nContent-Type: application/json\r\nContent-Length: " . strlen($answer[1]) . "\r\nConnection: close\r\n\r\n" . $answer[1]);
            fclose($c);
        }
        sleep(1);';
    $file = "$dir/server.php";
    file_put_contents($file, $code);
    $p = proc_open([PHP_BINARY, '-n', $file], [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
    $name = trim((string) fgets($pipes[1]));
    $address = $unix ? "unix:$dir/c.sock" : "tcp:$name";
    $requests = static function () use ($log): array {
        clearstatcache();
        return is_file($log) ? json_decode((string) file_get_contents($log), true) : [];
    };
    $stop = static function () use ($p, $pipes, $dir): void {
        proc_terminate($p);
        fclose($pipes[1]);
        fclose($pipes[2]);
        proc_close($p);
        array_map('unlink', glob("$dir/*") ?: []);
        @unlink("$dir/c.sock");
        rmdir($dir);
    };
    return [$address, $requests, $stop];
}

test('ControlClient: requests, bodies and answers', function () use ($ID): void {
    [$address, $requests, $stop] = fakeControl([
        [200, '{"reached":3}'],
        [200, '{"reached":1}'],
        [200, '{"reached":0}'],
        [200, '{"reached":1}'],
        [200, '{"channel":"room/1","members":["' . $ID . '"]}'],
        [200, '{"connections":[{"id":"' . $ID . '","path":"/chat.php","ip":"127.0.0.1","since":1,"channels":["room"]}]}'],
        [200, '{"ok":true}'],
    ]);
    try {
        $c = new ControlClient($address, 's3cret');
        same(3, $c->publish('room:1', 'hé "quoted"'));
        same(1, $c->publish('room:1', "\x00\xFF", true, $ID));
        same(0, $c->send($ID, 'hi'));
        same(1, $c->close($ID, 4000, 'bye'));
        same([$ID], $c->members('room/1'));
        same([['id' => $ID, 'path' => '/chat.php', 'ip' => '127.0.0.1', 'since' => 1, 'channels' => ['room']]], $c->connections());
        same(true, $c->healthy());
        $r = $requests();
        same(7, count($r));
        $hostPort = substr($address, strlen('tcp:'));
        same("POST /publish HTTP/1.1\r\nHost: $hostPort\r\nUser-Agent: wsfpm-php\r\nAccept: application/json\r\nConnection: close\r\n"
            . "Authorization: Bearer s3cret\r\nContent-Type: application/json\r\nContent-Length: 59\r\n\r\n"
            . '{"channel":"room:1","data":"hé \"quoted\"","binary":false}', $r[0]);
        same('{"channel":"room:1","data":"AP8=","binary":true,"exclude":"' . $ID . '"}', explode("\r\n\r\n", $r[1])[1]);
        same('{"id":"' . $ID . '","data":"hi","binary":false}', explode("\r\n\r\n", $r[2])[1]);
        same('{"id":"' . $ID . '","code":4000,"reason":"bye"}', explode("\r\n\r\n", $r[3])[1]);
        check(str_starts_with($r[4], "GET /channels/room%2F1 HTTP/1.1\r\n"), $r[4]);
        check(!str_contains($r[4], 'Content-Length'), 'no body on GET');
        check(str_starts_with($r[5], "GET /connections HTTP/1.1\r\n"));
        check(str_starts_with($r[6], "GET /healthz HTTP/1.1\r\n") && !str_contains($r[6], 'Authorization'), 'healthz without the token');
    } finally {
        $stop();
    }
});

test('ControlClient: 401, 400, 413 and 500 become ControlExceptions that say what to do', function (): void {
    [$address, , $stop] = fakeControl([
        [401, '{"error":"unauthorized"}'],
        [400, '{"error":"bad channel name","code":"WSFPM_ERR_CHANNEL"}'],
        [413, ''],
        [500, 'oops'],
        [200, 'not json'],
    ]);
    try {
        $c = new ControlClient($address, 'wrong');
        $expect = static function (callable $fn, int $status, string $contains, ?string $code = null): void {
            try {
                $fn();
            } catch (ControlException $e) {
                same($status, $e->status, 'status');
                same($code, $e->errorCode, 'errorCode');
                check(str_contains($e->getMessage(), $contains), 'message: ' . $e->getMessage());
                return;
            }
            throw new RuntimeException('expected a ControlException');
        };
        $expect(fn () => $c->publish('a', 'x'), 401, 'WSFPM_CONTROL_TOKEN');
        $expect(fn () => $c->publish('a', 'x'), 400, 'bad channel name (WSFPM_ERR_CHANNEL)', 'WSFPM_ERR_CHANNEL');
        $expect(fn () => $c->publish('a', 'x'), 413, 'max-message');
        $expect(fn () => $c->publish('a', 'x'), 500, 'HTTP 500: oops');
        $expect(fn () => $c->publish('a', 'x'), 200, 'not a JSON object');
    } finally {
        $stop();
    }
});

test('ControlClient over a unix socket', function (): void {
    [$address, $requests, $stop] = fakeControl([[200, '{"reached":2}']], true);
    try {
        same(2, (new ControlClient($address, 't'))->publish('x', 'y'));
        check(str_contains($requests()[0], "\r\nHost: localhost\r\n"));
    } finally {
        $stop();
    }
});

test('ControlClient: connection refused, timeout, missing token, bad arguments', function () use ($ID): void {
    // A port that was just free: nothing listens there.
    $probe = stream_socket_server('tcp://127.0.0.1:0');
    $free = stream_socket_get_name($probe, false);
    fclose($probe);
    try {
        (new ControlClient("tcp:$free", 't'))->publish('a', 'b');
        throw new RuntimeException('expected a ControlException');
    } catch (ControlException $e) {
        same(0, $e->status);
        check(str_contains($e->getMessage(), 'cannot reach the wsfpm control API'), $e->getMessage());
    }
    same(false, (new ControlClient("tcp:$free"))->healthy());

    [$address, , $stop] = fakeControl([null]);
    try {
        $t = microtime(true);
        (new ControlClient($address, 't', 0.3))->send($ID, 'x');
        throw new RuntimeException('expected a ControlException');
    } catch (ControlException $e) {
        check(str_contains($e->getMessage(), 'did not answer'), $e->getMessage());
        check(microtime(true) - $t < 2, 'gave up in time');
    } finally {
        $stop();
    }

    $saved = [$_SERVER['WSFPM_CONTROL_TOKEN'] ?? null, getenv('WSFPM_CONTROL_TOKEN')];
    unset($_SERVER['WSFPM_CONTROL_TOKEN']);
    putenv('WSFPM_CONTROL_TOKEN');
    try {
        (new ControlClient("tcp:$free"))->publish('a', 'b');
        throw new RuntimeException('expected a ControlException');
    } catch (ControlException $e) {
        check(str_contains($e->getMessage(), 'no control token'), $e->getMessage());
    }
    $c = new ControlClient("tcp:$free", 't');
    throws(fn () => $c->publish('bad name', 'x'), 'invalid channel name');
    throws(fn () => $c->publish('a', 'x', false, 'nope'), 'invalid connection id');
    throws(fn () => $c->publish('a', "\xFF"), 'UTF-8');
    throws(fn () => $c->send('nope', 'x'), 'invalid connection id');
    throws(fn () => $c->close($ID, 1006), 'close code');
    throws(fn () => $c->close($ID, 1002), 'control API');
    throws(fn () => $c->close($ID, 2999), 'close code');
    throws(fn () => $c->close($ID, 1000, "\xFF"), 'UTF-8');
    throws(fn () => $c->members('a b'), 'invalid channel name');
    throws(fn () => new ControlClient('nonsense'), 'control API address');
});

test('Client: static calls on a default ControlClient from the environment', function () use ($ID): void {
    [$address, $requests, $stop] = fakeControl([
        [200, '{"reached":4}'],
        [200, '{"reached":1}'],
        [200, '{"reached":1}'],
        [200, '{"channel":"r","members":[]}'],
        [200, '{"connections":[]}'],
    ]);
    $_SERVER['WSFPM_CONTROL'] = $address;
    $_SERVER['WSFPM_CONTROL_TOKEN'] = 'from-env';
    try {
        Client::setInstance(null);
        same($address, Client::instance()->address());
        same(4, Client::publish('r', 'x'));
        same(1, Client::send($ID, 'y', true));
        same(1, Client::close($ID));
        same([], Client::members('r'));
        same([], Client::connections());
        check(str_contains($requests()[0], "Authorization: Bearer from-env\r\n"));
        same('{"id":"' . $ID . '","data":"eQ==","binary":true}', explode("\r\n\r\n", $requests()[1])[1]);
        same('{"id":"' . $ID . '","code":1000,"reason":""}', explode("\r\n\r\n", $requests()[2])[1]);
        same('tcp:10.0.0.1:1', Client::to('tcp:10.0.0.1:1', 'x')->address());
    } finally {
        unset($_SERVER['WSFPM_CONTROL'], $_SERVER['WSFPM_CONTROL_TOKEN']);
        Client::setInstance(null);
        $stop();
    }
    putenv('WSFPM_CONTROL=unix:/tmp/from-getenv.sock');
    try {
        same('unix:/tmp/from-getenv.sock', (new ControlClient())->address());
    } finally {
        putenv('WSFPM_CONTROL');
    }
    same(ControlClient::DEFAULT_ADDRESS, (new ControlClient())->address());
});

echo "$passed passed, $failed failed\n";
exit($failed === 0 ? 0 : 1);
