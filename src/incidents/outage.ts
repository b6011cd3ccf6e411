import { sql, type Kysely, type Transaction } from 'kysely';
import { declineCodes } from '../gateways/connector.js';
import type { KeelDatabase } from '../storage/schema.js';
import type { IncidentRow } from './incidents.js';

/**
 * The outage record of a resolved incident: its times, and its impact counted from Keel's own payments created
 * in its window (from `impactLookbackMs` before it started until it resolved) at the partners and in the (merchant) countries its alerts named — every
 * partner or country when none was named. A payment counts when it failed for a reason other than a decline
 * (`payments_failed`), was left uncharged by a call that never reached the partner (`payments_unreachable`: not
 * sent, breaker open, connection refused; a payment that failed over and was charged elsewhere is not counted),
 * or is still `processing` (an answer not yet known); `amount_at_risk` sums their amounts per currency. Declines are the shoppers' banks answering, not the outage. Recorded when the incident resolves,
 * so it does not drift as those payments settle later.
 */

/**
 * How far before the incident started its impact is counted from: the failures that made an alert fire came
 * before it (a rule holds its condition for its `for:` first, a breaker opens only after its window of errors),
 * and a person opens an incident after noticing.
 */
export const impactLookbackMs = 5 * 60_000;

export interface OutageRecord {
  readonly started_at: string;
  readonly detected_at: string;
  readonly mitigated_at: string | null;
  readonly resolved_at: string | null;
  readonly duration_s: number | null;
  readonly time_to_detect_s: number;
  readonly time_to_mitigate_s: number | null;
  readonly gateways: readonly string[];
  readonly countries: readonly string[];
  /** The payments counted: created from `impactLookbackMs` before the start until the incident resolved. */
  readonly impact_window: { readonly from: string; readonly to: string };
  readonly impact: {
    readonly payments_failed: number;
    readonly payments_unreachable: number;
    readonly payments_processing: number;
    readonly amount_at_risk: readonly { amount: number; currency: string }[];
  };
  readonly people: readonly string[];
  readonly important_messages: readonly { at: string; text: string; author: string | null }[];
}

type Db = Kysely<KeelDatabase> | Transaction<KeelDatabase>;

export async function outageOf(db: Db, incident: IncidentRow): Promise<OutageRecord> {
  const started = new Date(incident.started_at);
  const from = new Date(started.getTime() - impactLookbackMs);
  const ended = incident.resolved_at === null ? new Date() : new Date(incident.resolved_at);
  const seconds = (from: Date, to: Date | null) => (to === null ? null : Math.round((new Date(to).getTime() - from.getTime()) / 1000));
  // Per payment of the window, at the named partners (the one it went to, or one it tried) and merchant countries:
  // still processing; not charged after a call that never reached the partner (not sent: refused, breaker open)
  // and not charged elsewhere since; or failed for a reason other than a decline.
  const impacted = await sql<{ kind: 'failed' | 'unreachable' | 'processing'; currency: string; count: string; amount: string }>`
    WITH window_payments AS (
      SELECT p.id, p.status, p.failure_code, p.amount, trim(p.currency) AS currency,
             EXISTS (SELECT 1 FROM payment_attempts a WHERE a.payment_id = p.id AND a.status = 'not_sent'
                     AND (cardinality(${incident.gateways}::text[]) = 0 OR a.gateway = ANY(${incident.gateways}::text[]))) AS not_sent
      FROM payments p JOIN merchants m ON m.id = p.merchant_id
      WHERE p.created_at >= ${from} AND p.created_at <= ${ended}
        AND (cardinality(${incident.countries}::text[]) = 0 OR m.country = ANY(${incident.countries}::text[]))
        AND (cardinality(${incident.gateways}::text[]) = 0 OR p.gateway = ANY(${incident.gateways}::text[])
             OR EXISTS (SELECT 1 FROM payment_attempts a WHERE a.payment_id = p.id AND a.gateway = ANY(${incident.gateways}::text[]))))
    SELECT CASE WHEN status = 'processing' THEN 'processing' WHEN status = 'failed' AND NOT not_sent THEN 'failed' ELSE 'unreachable' END AS kind,
           currency, count(*)::text AS count, sum(amount)::text AS amount
    FROM window_payments
    WHERE status = 'processing'
       OR (status = 'failed' AND coalesce(failure_code, '') <> ALL(${[...declineCodes]}::text[]))
       OR (not_sent AND status IN ('requires_payment_method', 'requires_confirmation', 'failed'))
    GROUP BY 1, 2`.execute(db);
  const count = (kind: string) => impacted.rows.filter((row) => row.kind === kind).reduce((sum, row) => sum + Number(row.count), 0);
  const atRisk = new Map<string, bigint>();
  for (const row of impacted.rows) atRisk.set(row.currency, (atRisk.get(row.currency) ?? 0n) + BigInt(row.amount));
  const entries = await db.selectFrom('incident_timeline').select(['at', 'text', 'author', 'important']).where('incident_id', '=', incident.id).orderBy('at').orderBy('id').execute();
  const owners = await db.selectFrom('incident_owners').select('person').where('incident_id', '=', incident.id).execute();
  const people = [...new Set([incident.imoc, incident.srm, ...owners.map((owner) => owner.person), ...entries.map((entry) => entry.author)].filter((person): person is string => person !== null && person !== 'keel' && person !== 'alertmanager'))];
  return {
    started_at: started.toISOString(),
    detected_at: new Date(incident.detected_at).toISOString(),
    mitigated_at: incident.mitigated_at === null ? null : new Date(incident.mitigated_at).toISOString(),
    resolved_at: incident.resolved_at === null ? null : new Date(incident.resolved_at).toISOString(),
    duration_s: seconds(started, incident.resolved_at),
    time_to_detect_s: seconds(started, incident.detected_at) ?? 0,
    time_to_mitigate_s: seconds(started, incident.mitigated_at),
    gateways: incident.gateways,
    countries: incident.countries,
    impact_window: { from: from.toISOString(), to: ended.toISOString() },
    impact: {
      payments_failed: count('failed'),
      payments_unreachable: count('unreachable'),
      payments_processing: count('processing'),
      amount_at_risk: [...atRisk].sort(([a], [b]) => a.localeCompare(b)).map(([currency, amount]) => ({ amount: Number(amount), currency })),
    },
    people,
    important_messages: entries.filter((entry) => entry.important).map((entry) => ({ at: new Date(entry.at).toISOString(), text: entry.text, author: entry.author })),
  };
}
