/**
 * The php-fpm masters upgrades are spread over: the site's pools named in
 * `--fpm a,b,…`, or the masters `--fpm managed` runs. One master of N
 * workers costs O(N²) memory in all (a worker's private memory grows with
 * the siblings forked before it, docs/performance.md), so thousands of
 * bound connections are cheaper on several masters of ≤ 1,000.
 *
 * Each upgrade goes to the master holding the fewest of wsfpm's requests
 * (connections bound to it and upgrades it is deciding); with status
 * listeners, one whose status says no worker is idle is passed over for
 * the next, and only when every one is full is the upgrade refused (503).
 */
import { type FpmAddress } from '../fastcgi/address.ts';
import { type WsfpmError } from '../errors.ts';
import { type Log } from '../log.ts';
import { PoolGate } from './status.ts';

export interface FpmTarget {
  readonly address: FpmAddress;
  readonly gate: PoolGate | null;
  /** Connections bound to it and upgrades it is deciding. */
  held: number;
  /** A managed master that died and is being restarted: passed over until it is back. */
  down: boolean;
}

/** A target taken for one upgrade; `release` (idempotent) gives it back when its request ends. */
export interface FpmHold {
  readonly target: FpmTarget;
  release(): void;
}

export class FpmSet {
  readonly targets: readonly FpmTarget[];
  /** Where ties start, turned on each upgrade so equal masters take turns. */
  #turn = 0;

  /** `statuses`: one per address, in the same order, or empty. */
  constructor(addresses: readonly FpmAddress[], statuses: readonly FpmAddress[], log: Log) {
    if (addresses.length === 0) throw new Error('FpmSet needs at least one address');
    this.targets = addresses.map((address, i) => ({ address, gate: statuses[i] ? new PoolGate(statuses[i]!, log) : null, held: 0, down: false }));
  }

  /** The first master: event calls, pages and webhooks go there (managed gives it their headroom). */
  get first(): FpmAddress {
    return this.targets[0]!.address;
  }

  /** A master for a new upgrade, or the refusal when every one is full. */
  async take(): Promise<FpmHold | WsfpmError> {
    const n = this.targets.length;
    const start = this.#turn++ % n;
    const order = n === 1 ? this.targets : [...this.targets.slice(start), ...this.targets.slice(0, start)].sort((a, b) => a.held - b.held);
    let refusal: WsfpmError | null = null;
    for (const target of order) {
      if (target.down && order.some((t) => !t.down)) continue;
      // Counted before the status is read, so upgrades arriving meanwhile look at the next master.
      target.held++;
      const full = target.gate ? await target.gate.admit() : null;
      if (!full) return hold(target);
      target.held--;
      refusal = full;
    }
    return refusal!;
  }

  /** The targets' addresses, for status and metrics. */
  get addresses(): FpmAddress[] {
    return this.targets.map((t) => t.address);
  }
}

function hold(target: FpmTarget): FpmHold {
  let held = true;
  return {
    target,
    release() {
      if (!held) return;
      held = false;
      target.held--;
    },
  };
}
