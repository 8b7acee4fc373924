/**
 * Connection counts and their limits. An upgrade takes a bound slot before
 * PHP is asked (it holds a worker while PHP decides, like a bound
 * connection); when the script chooses events mode the slot moves to the
 * events count, which has its own, larger limit. The per-address count
 * covers both.
 */
import { wsfpmError, type WsfpmError } from '../errors.ts';

export interface SlotLimits {
  maxConnections: number;
  maxEventConnections: number;
  maxPerIp: number;
}

export interface Slot {
  /** Moves this slot to the events count; the refusal when that is full (the slot is then released). */
  toEvents(): WsfpmError | null;
  /** Idempotent. */
  release(): void;
}

export class Slots {
  bound = 0;
  events = 0;
  readonly #perIp = new Map<string, number>();

  constructor(private readonly limits: () => SlotLimits) {}

  /** Taken now, before any await: concurrent upgrades must see each other in the counts. */
  take(ip: string, draining: boolean): Slot | WsfpmError {
    const { maxConnections, maxPerIp, maxEventConnections } = this.limits();
    if (draining) return wsfpmError('WSFPM_ERR_DRAINING');
    if (this.bound >= maxConnections) return wsfpmError('WSFPM_ERR_TOO_MANY', `${this.bound} open`);
    const fromIp = this.#perIp.get(ip) ?? 0;
    if (fromIp >= maxPerIp) return wsfpmError('WSFPM_ERR_TOO_MANY_FROM_IP', `${fromIp} open from ${ip}`);
    this.bound++;
    this.#perIp.set(ip, fromIp + 1);
    let kind: 'bound' | 'events' | null = 'bound';
    const release = (): void => {
      if (kind === null) return;
      if (kind === 'bound') this.bound--;
      else this.events--;
      kind = null;
      const n = (this.#perIp.get(ip) ?? 1) - 1;
      if (n > 0) this.#perIp.set(ip, n);
      else this.#perIp.delete(ip);
    };
    return {
      toEvents: () => {
        if (kind !== 'bound') return null;
        if (this.events >= maxEventConnections) {
          release();
          return wsfpmError('WSFPM_ERR_TOO_MANY', `${this.events} events-mode connections open`);
        }
        this.bound--;
        this.events++;
        kind = 'events';
        return null;
      },
      release,
    };
  }
}
