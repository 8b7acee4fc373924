/**
 * Which store keeps channel history (this node's memory, or Redis shared by
 * every node), and the timer that keeps the history of channels with a
 * history subscription here alive and forgets the rest after the ttl.
 */
import { randomBytes } from 'node:crypto';
import { MemoryHistory, type HistoryLimits, type HistoryStore } from './history.ts';
import { type Hub } from './hub.ts';

export const newEpoch = (): string => randomBytes(6).toString('hex');

export interface HistorySource {
  /** Redis's history store, when the broker shares one. */
  history(limits: HistoryLimits): HistoryStore;
}

/** Installs the store on the hub; returns the stop for shutdown. size 0: no history at all. */
export function keepHistory(hub: Hub, limits: HistoryLimits, shared: HistorySource | null): () => void {
  if (limits.size === 0) return () => {};
  const store = shared ? shared.history(limits) : new MemoryHistory(limits, newEpoch);
  hub.history = store;
  // Well inside the ttl, so a channel with a subscriber never lapses between two sweeps.
  const timer = setInterval(() => {
    hub.touchHistory();
    if (store instanceof MemoryHistory) store.sweep();
  }, Math.min(10_000, Math.floor(limits.ttl / 3)));
  timer.unref();
  return () => clearInterval(timer);
}
