/**
 * A buffer of its own for what a connection keeps for its whole life: a small
 * Buffer is a slice of a shared 8 KiB slab, and one long-lived slice keeps
 * the whole slab from being freed.
 */
export function ownCopy(b: Buffer): Buffer {
  const own = Buffer.allocUnsafeSlow(b.length);
  b.copy(own);
  return own;
}
