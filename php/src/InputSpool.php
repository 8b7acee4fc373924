<?php

declare(strict_types=1);

namespace Wsfpm;

/**
 * Keeps php://input's hidden copy from filling the disk.
 *
 * PHP appends every byte read from php://input to a temp file (in
 * upload_tmp_dir, else the system temp dir) so the stream can be rewound,
 * and that file only goes away when the request ends. A websocket request
 * can live for days, so we find the file through /proc/self/fd and punch
 * its contents out: truncating to 0 and back to the old size leaves a
 * sparse file of the same length. PHP only ever appends at the end and
 * reads at its current position, both past the hole, so it never notices.
 * (Rewinding php://input afterwards would read zeros: the library never does.)
 *
 * Where /proc is missing or the file cannot be identified with certainty,
 * this does nothing: a full disk much later beats corrupting a live stream.
 *
 * @internal
 */
final class InputSpool
{
    /** Scanning /proc costs a few syscalls; every 4 MiB keeps it negligible and the file small. */
    public const TRIM_EVERY = 4 * 1024 * 1024;

    /**
     * The spool grows by exactly what PHP read from FastCGI, which equals what we
     * consumed while php://input is unbuffered; the slack covers a read buffer
     * that could not be disabled.
     */
    private const SIZE_SLACK = 65536;

    private const FD_DIR = '/proc/self/fd';

    /** @var list<string> */
    private array $dirs;

    private bool $disabled;

    private ?int $fd = null;

    private int $trimmedAt = 0;

    /**
     * @param list<string>|null $dirs directories the spool may live in; defaults to PHP's choice
     */
    public function __construct(?array $dirs = null)
    {
        $dirs ??= [(string) ini_get('upload_tmp_dir'), sys_get_temp_dir()];
        $real = [];
        foreach ($dirs as $dir) {
            // readlink() gives canonical paths, so compare against canonical directories.
            $r = $dir === '' ? false : @realpath($dir);
            if ($r !== false) {
                $real[] = $r;
            }
        }
        $this->dirs = array_values(array_unique($real));
        $this->disabled = $this->dirs === [] || !@is_dir(self::FD_DIR);
    }

    /**
     * Tell the spool how many bytes have been consumed from php://input in total;
     * trims once per TRIM_EVERY bytes.
     */
    public function consumed(int $total): void
    {
        if ($this->disabled || $total - $this->trimmedAt < self::TRIM_EVERY) {
            return;
        }
        $this->trimmedAt = $total;
        $this->trim($total);
    }

    /**
     * Punch out the spool file whose size matches $expected. Returns whether it did.
     */
    public function trim(int $expected): bool
    {
        if ($this->disabled) {
            return false;
        }
        // An fd number can be closed and reused by anything, so the cache is re-checked.
        if ($this->fd === null || !$this->matches($this->fd, $expected)) {
            $this->fd = $this->find($expected);
        }
        if ($this->fd === null) {
            return false;
        }
        $f = @fopen(self::FD_DIR . '/' . $this->fd, 'r+');
        if ($f === false) {
            // open_basedir or permissions: it will not get better later.
            $this->disabled = true;
            return false;
        }
        $stat = fstat($f);
        $ok = $stat !== false && ftruncate($f, 0) && ftruncate($f, $stat['size']);
        fclose($f);
        return $ok;
    }

    private function find(int $expected): ?int
    {
        $entries = @scandir(self::FD_DIR);
        if ($entries === false) {
            $this->disabled = true;
            return null;
        }
        $found = [];
        foreach ($entries as $entry) {
            if (preg_match('/^\d+$/D', $entry) === 1 && $this->matches((int) $entry, $expected)) {
                $found[] = (int) $entry;
            }
        }
        // Two candidates means we cannot tell ours from, say, the script's own tmpfile(): touch neither.
        return count($found) === 1 ? $found[0] : null;
    }

    private function matches(int $fd, int $expected): bool
    {
        $path = self::FD_DIR . '/' . $fd;
        $target = @readlink($path);
        if ($target === false) {
            return false;
        }
        if (str_ends_with($target, ' (deleted)')) {
            $target = substr($target, 0, -strlen(' (deleted)'));
        }
        if (!str_starts_with(basename($target), 'php') || !in_array(dirname($target), $this->dirs, true)) {
            return false;
        }
        // PHP caches the last stat() per path; the size we need is the live one.
        clearstatcache(true, $path);
        $stat = @stat($path);
        return $stat !== false
            && $stat['size'] >= $expected
            && $stat['size'] <= $expected + self::SIZE_SLACK;
    }
}
