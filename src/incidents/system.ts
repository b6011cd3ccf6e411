import type { Logger } from 'pino';
import type { SystemSignals } from '../observability/signals.js';
import type { IncidentsDeps } from './incidents.js';
import { systemEntry } from './incidents.js';

/**
 * Writes Keel's own system entries on the open incidents they concern, as this process's signals arrive: a
 * breaker opening or closing (on incidents naming that partner and country, or none), load shedding starting
 * (once per `shedQuietMs` of quiet), an anomaly opening (on incidents naming its partner, or none), a country's
 * checkout queue starting or stopping (on incidents naming that country, or none). Each write
 * happens after the signal, never in the path that signalled it; a failure is logged and dropped.
 */
export const shedQuietMs = 60_000;

export function listenForSystemEntries(signals: SystemSignals, deps: IncidentsDeps, logger: Logger): () => void {
  const write = (about: { gateway?: string | null; country?: string | null }, text: string) => {
    void systemEntry(deps.db, about, text).catch((error: unknown) => logger.warn({ err_message: String(error) }, 'incident system entry not written'));
  };
  let lastShedAt = 0;
  const onBreaker = (change: { gateway: string; country: string; to: string }) => {
    if (change.to === 'half_open') return;
    write({ gateway: change.gateway, country: change.country }, `circuit breaker ${change.gateway}/${change.country} ${change.to === 'open' ? 'opened' : 'closed'}`);
  };
  const onShed = (shed: { reason: string }) => {
    const now = Date.now();
    const quiet = now - lastShedAt >= shedQuietMs;
    lastShedAt = now;
    if (quiet) write({}, `load shedding started (${shed.reason})`);
  };
  const onAnomaly = (anomaly: { type: string; gateway: string | null }) => write({ gateway: anomaly.gateway }, `anomaly opened: ${anomaly.type}${anomaly.gateway === null ? '' : ` at ${anomaly.gateway}`}`);
  const onQueue = (queue: { country: string; to: 'started' | 'stopped' }) => write({ country: queue.country }, `checkout queue ${queue.to} for ${queue.country}`);
  signals.on('breaker', onBreaker);
  signals.on('queue', onQueue);
  signals.on('shed', onShed);
  signals.on('anomaly', onAnomaly);
  return () => {
    signals.off('breaker', onBreaker);
    signals.off('shed', onShed);
    signals.off('anomaly', onAnomaly);
    signals.off('queue', onQueue);
  };
}
