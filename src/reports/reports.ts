import { sql, type Kysely } from 'kysely';
import { KeelError } from '../errors.js';
import type { KeelDatabase } from '../storage/schema.js';
import { projectedEventTypes, projectionConsumer } from './projection.js';

/**
 * Reads the payments read model: one row per day and currency, split further by country and partner when
 * asked. Only the read model is read, never the payments table, so reports stay cheap however busy payments
 * are (and can move to a replica).
 */
export const reportDaysMax = 366;
export const reportDimensions = ['country', 'gateway'] as const;
export type ReportDimension = (typeof reportDimensions)[number];

export interface ReportQuery {
  readonly startDate: string;
  readonly endDate: string;
  readonly groupBy: readonly ReportDimension[];
}

const dayMs = 86_400_000;

function parseDay(value: string, param: string): number {
  const time = Date.parse(`${value}T00:00:00Z`);
  if (!/^\d{4}-\d{2}-\d{2}$/.test(value) || Number.isNaN(time) || new Date(time).toISOString().slice(0, 10) !== value) {
    throw new KeelError('parameter_invalid', `${param} must be a calendar date as YYYY-MM-DD.`, { param });
  }
  return time;
}

/** Checks the query string's period and grouping; defaults to the last 30 days (UTC) by day and currency. */
export function reportQueryFrom(input: { start_date?: string; end_date?: string; group_by?: string }, now: Date = new Date()): ReportQuery {
  const endDate = input.end_date ?? now.toISOString().slice(0, 10);
  const end = parseDay(endDate, 'end_date');
  const startDate = input.start_date ?? new Date(end - 29 * dayMs).toISOString().slice(0, 10);
  const start = parseDay(startDate, 'start_date');
  if (start > end) throw new KeelError('parameter_invalid', 'start_date must not be after end_date.', { param: 'start_date' });
  if ((end - start) / dayMs + 1 > reportDaysMax) throw new KeelError('parameter_invalid', `A report covers at most ${reportDaysMax} days.`, { param: 'start_date' });
  const groupBy: ReportDimension[] = [];
  for (const part of (input.group_by ?? '').split(',').map((value) => value.trim()).filter((value) => value !== '')) {
    if (!(reportDimensions as readonly string[]).includes(part)) {
      throw new KeelError('parameter_invalid', `group_by takes ${reportDimensions.join(' and ')}, comma-separated.`, { param: 'group_by' });
    }
    if (!groupBy.includes(part as ReportDimension)) groupBy.push(part as ReportDimension);
  }
  return { startDate, endDate, groupBy };
}

interface CounterRow {
  day: string;
  currency: string;
  country: string | null;
  gateway: string | null;
  created: string;
  authorized: string;
  failed: string;
  not_sent: string;
  canceled: string;
  captured: string;
  amount_captured: string;
  refunds: string;
  amount_refunded: string;
}

export async function readPaymentsReport(db: Kysely<KeelDatabase>, merchantId: string, query: ReportQuery): Promise<Record<string, unknown>> {
  const byCountry = query.groupBy.includes('country');
  const byGateway = query.groupBy.includes('gateway');
  const dimensions = [sql`day`, sql`currency`, ...(byCountry ? [sql`country`] : []), ...(byGateway ? [sql`gateway`] : [])];
  const country = byCountry ? sql`country` : sql`NULL::text`;
  const gateway = byGateway ? sql`gateway` : sql`NULL::text`;
  const where = sql`merchant_id = ${merchantId} AND day BETWEEN ${query.startDate}::date AND ${query.endDate}::date`;
  const counters = await sql<CounterRow>`
    SELECT to_char(day, 'YYYY-MM-DD') AS day, trim(currency) AS currency, ${country} AS country, ${gateway} AS gateway,
      sum(created)::text AS created, sum(authorized)::text AS authorized, sum(failed)::text AS failed, sum(not_sent)::text AS not_sent, sum(canceled)::text AS canceled,
      sum(captured)::text AS captured, sum(amount_captured)::text AS amount_captured, sum(refunds)::text AS refunds,
      sum(amount_refunded)::text AS amount_refunded
    FROM report_payments_daily WHERE ${where}
    GROUP BY ${sql.join(dimensions)} ORDER BY ${sql.join(dimensions)}`.execute(db);
  const failures = await sql<{ day: string; currency: string; country: string | null; gateway: string | null; failure_code: string; count: string }>`
    SELECT to_char(day, 'YYYY-MM-DD') AS day, trim(currency) AS currency, ${country} AS country, ${gateway} AS gateway, failure_code, sum(count)::text AS count
    FROM report_payment_failures WHERE ${where}
    GROUP BY ${sql.join([...dimensions, sql`failure_code`])} ORDER BY failure_code`.execute(db);
  const keyOf = (row: { day: string; currency: string; country: string | null; gateway: string | null }) => `${row.day}|${row.currency}|${row.country ?? ''}|${row.gateway ?? ''}`;
  const failureCodes = new Map<string, Record<string, number>>();
  for (const row of failures.rows) {
    const codes = failureCodes.get(keyOf(row)) ?? {};
    codes[row.failure_code] = Number(row.count);
    failureCodes.set(keyOf(row), codes);
  }
  const data = counters.rows.map((row) => {
    const authorized = Number(row.authorized);
    const failed = Number(row.failed);
    const notSent = Number(row.not_sent);
    return {
      object: 'payment_report_row',
      day: row.day,
      currency: row.currency,
      ...(byCountry ? { country: row.country } : {}),
      // '' in storage: the payment was not yet routed to a partner (its creation).
      ...(byGateway ? { gateway: row.gateway === '' ? null : row.gateway } : {}),
      created: Number(row.created),
      authorized,
      failed,
      not_sent: notSent,
      canceled: Number(row.canceled),
      captured: Number(row.captured),
      amount_captured: Number(row.amount_captured),
      refunds: Number(row.refunds),
      amount_refunded: Number(row.amount_refunded),
      // Of the confirmations that ended, the share approved: a confirmation refused before sending is one the shopper
      // saw fail, so it counts (and the same payment confirmed again later counts again, with its new outcome).
      approval_rate: authorized + failed + notSent === 0 ? null : Math.round((authorized / (authorized + failed + notSent)) * 10_000) / 10_000,
      failure_codes: failureCodes.get(keyOf(row)) ?? {},
    };
  });
  return {
    object: 'payment_report',
    start_date: query.startDate,
    end_date: query.endDate,
    group_by: query.groupBy,
    as_of: (await completeUpTo(db)).toISOString(),
    data,
  };
}

/**
 * The time up to which the read model holds every event: the creation time of the oldest event after the
 * newest one counted, or now when none waits.
 */
export async function completeUpTo(db: Kysely<KeelDatabase>): Promise<Date> {
  const newest = await db.selectFrom('inbox').select('event_id').where('consumer', '=', projectionConsumer).orderBy('event_id', 'desc').limit(1).executeTakeFirst();
  let pending = db.selectFrom('outbox').select('created_at').where('type', 'in', [...projectedEventTypes]).orderBy('id').limit(1);
  if (newest !== undefined) pending = pending.where('id', '>', newest.event_id);
  const oldest = await pending.executeTakeFirst();
  return oldest === undefined ? new Date() : new Date(oldest.created_at);
}
