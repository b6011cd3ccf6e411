import { EventEmitter } from 'node:events';

/**
 * What happens inside one Keel process that an incident's timeline should show, as it happens: a breaker opening
 * or closing, load being shed, an anomaly opening, a checkout queue starting or stopping. Emitting never waits and never fails the caller; the incidents
 * module listens (runtime.ts) and writes system entries on the open incidents they concern.
 */
export interface SignalMap {
  breaker: [{ readonly gateway: string; readonly country: string; readonly to: 'open' | 'closed' | 'half_open' }];
  shed: [{ readonly reason: string }];
  anomaly: [{ readonly type: string; readonly gateway: string | null }];
  /** A country's checkout queue started (a shopper waits) or stopped (nobody waited for a minute). */
  queue: [{ readonly country: string; readonly to: 'started' | 'stopped' }];
}

export class SystemSignals extends EventEmitter<SignalMap> {
  /** Emits to every listener; a listener that throws is the listener's problem, never the emitter's. */
  signal<K extends keyof SignalMap>(name: K, ...payload: SignalMap[K]): void {
    try {
      this.emit(name, ...(payload as never));
    } catch {
      // A listener's failure must not reach a payment's path.
    }
  }
}
