/** A token bucket: `rate` tokens a second, holding at most one second's worth (a one-second burst). */
export class TokenBucket {
  #tokens: number;
  #refilled = Date.now();

  constructor(private readonly rate: number) {
    this.#tokens = rate;
  }

  /** False when the bucket is empty (the caller is over its rate); a rate of 0 never limits. */
  take(): boolean {
    if (this.rate === 0) return true;
    const now = Date.now();
    this.#tokens = Math.min(this.rate, this.#tokens + ((now - this.#refilled) * this.rate) / 1000);
    this.#refilled = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}
