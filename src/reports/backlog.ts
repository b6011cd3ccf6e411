import { sql, type Kysely } from 'kysely';
import { Gauge, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import { completeUpTo } from './reports.js';
import type { KeelDatabase } from '../storage/schema.js';

/**
 * Saturation of the event pipeline, read from the database when `/metrics` is scraped, so every instance reports
 * the same shared figures: events waiting for the relay, webhook deliveries due, and how far the payments read
 * model trails the events. Counts stop at `backlogCountMax` so a scrape stays cheap in a long outage. A scrape
 * while the database is unreachable keeps the last values (and logs), rather than failing `/metrics`.
 */
export const backlogCountMax = 100_000;

export function registerBacklogMetrics(registry: Registry, db: Kysely<KeelDatabase>, logger: Logger): void {
  new Gauge({
    name: 'keel_projection_lag_seconds',
    help: 'How far the payments read model trails the events: now less the time up to which it holds every event',
    registers: [registry],
    async collect() {
      try {
        this.set(Math.max(0, (Date.now() - (await completeUpTo(db)).getTime()) / 1000));
      } catch (error) {
        logger.warn({ err_message: String(error) }, 'projection lag metric unavailable');
      }
    },
  });
  new Gauge({
    name: 'keel_event_backlog',
    help: `Events waiting for the relay (outbox_unpublished) and webhook deliveries due (webhooks_due), counted up to ${backlogCountMax}`,
    labelNames: ['queue'],
    registers: [registry],
    async collect() {
      try {
        const counts = await sql<{ outbox: string; webhooks: string }>`
          SELECT (SELECT count(*) FROM (SELECT 1 FROM outbox WHERE published_at IS NULL LIMIT ${backlogCountMax}) AS waiting)::text AS outbox,
                 (SELECT count(*) FROM (SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= now() LIMIT ${backlogCountMax}) AS due)::text AS webhooks`.execute(db);
        const row = counts.rows[0];
        this.set({ queue: 'outbox_unpublished' }, Number(row?.outbox ?? 0));
        this.set({ queue: 'webhooks_due' }, Number(row?.webhooks ?? 0));
      } catch (error) {
        logger.warn({ err_message: String(error) }, 'event backlog metrics unavailable');
      }
    },
  });
}
