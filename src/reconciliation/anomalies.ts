import type { Kysely, Selectable } from 'kysely';
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import type { StuckAttempts } from '../payments/operations/context.js';
import type { SystemSignals } from '../observability/signals.js';
import { KeelError } from '../errors.js';
import { appendEvent } from '../events/outbox.js';
import { paged, type Page } from '../http/lists.js';
import { newId, publicToUuid, uuidToPublic } from '../storage/ids.js';
import type { AnomaliesTable, KeelDatabase } from '../storage/schema.js';

/**
 * Anomalies: what reconciliation (and the janitor) found where Keel's record and the partner's disagree, typed
 * from a closed list, with both sides (`expected` is Keel's, `actual` the partner's), tracked until resolved.
 * Opening is idempotent (a dedupe key per merchant and type), and opening or resolving writes its event
 * (`anomaly.opened`, `anomaly.resolved`) in the same transaction, so webhooks tell the merchant.
 */
export const anomalyTypes = [
  'MismatchCaptureStatus',
  'AmountMismatch',
  'MissingAtPartner',
  'MissingLocally',
  'DuplicateCharge',
  'RefundMismatch',
  'FeeMismatch',
  'BalanceMismatch',
  'StuckProcessing',
] as const;
export type AnomalyType = (typeof anomalyTypes)[number];

/** Types whose anomaly means money may be where it should not be: they raise the alert's severity. */
export const moneyMovingTypes: ReadonlySet<AnomalyType> = new Set(['AmountMismatch', 'MissingLocally', 'DuplicateCharge', 'RefundMismatch', 'MismatchCaptureStatus', 'BalanceMismatch']);

/**
 * What a person should do about an open anomaly of each type (`next_action`): everything that moves money at the
 * partner is theirs to do; Keel never does it on its own.
 */
export const nextActions: Readonly<Record<AnomalyType, string>> = {
  MismatchCaptureStatus: 'Keel and the partner disagree on whether the payment was captured: capture or cancel it at the partner so that both agree, then resolve with a note.',
  AmountMismatch: "The partner charged another amount than Keel's: refund the excess at the partner, or collect the shortfall from the shopper, then resolve with a note.",
  MissingAtPartner: 'The partner has no record of a capture Keel recorded: ask the partner whether the shopper was charged; if not, collect the payment again, then resolve with a note.',
  MissingLocally: 'The partner holds a charge no Keel payment made: void or refund it at the partner, then resolve with a note.',
  DuplicateCharge: 'The partner charged the order more than once: refund the extra charges at the partner, then resolve with a note.',
  RefundMismatch: "The refunds of the payment differ: refund the remainder at the partner, or ask the partner to reverse its extra refund, so both show Keel's total, then resolve with a note.",
  FeeMismatch: 'The partner took another fee than the contract says: claim the difference from the partner, or correct the contract fee (keel merchant set-fees), then resolve with a note.',
  BalanceMismatch: "What the partner holds unpaid differs from the ledger: the day's other anomalies each move it, so settle those first; a difference that remains is a ledger entry (keel ledger verify) or a partner adjustment to find on its statement.",
  StuckProcessing: "The partner would not say whether the payment happened: every run asks again on its own; if it still will not answer, ask the partner's support and resolve with its answer.",
};

export type AnomalyRow = Selectable<AnomaliesTable>;
type Db = Kysely<KeelDatabase>;

export interface NewAnomaly {
  readonly merchantId: string;
  readonly type: AnomalyType;
  readonly gateway: string | null;
  readonly paymentId?: string | null;
  readonly attemptId?: string | null;
  readonly refundId?: string | null;
  readonly orderId?: string | null;
  readonly partnerReference?: string | null;
  readonly expected: Record<string, unknown> | null;
  readonly actual: Record<string, unknown> | null;
  readonly dedupeKey: string;
}

export function anomalyToApi(row: AnomalyRow): Record<string, unknown> {
  return {
    id: uuidToPublic('anomaly', row.id),
    object: 'anomaly',
    type: row.type,
    status: row.status,
    gateway: row.gateway,
    merchant: uuidToPublic('merchant', row.merchant_id),
    payment: row.payment_id === null ? null : uuidToPublic('payment', row.payment_id),
    refund: row.refund_id === null ? null : uuidToPublic('refund', row.refund_id),
    order_id: row.order_id,
    partner_reference: row.partner_reference,
    expected: row.expected,
    actual: row.actual,
    severity: moneyMovingTypes.has(row.type as AnomalyType) ? 'high' : 'normal',
    next_action: row.status === 'open' ? (nextActions[row.type as AnomalyType] ?? null) : null,
    detected_at: new Date(row.created_at).toISOString(),
    resolved_at: row.resolved_at === null ? null : new Date(row.resolved_at).toISOString(),
    resolution: row.resolution,
  };
}

/** Opens the anomaly unless the same finding is already recorded; returns it when this call opened it. */
export async function openAnomaly(trx: Db, anomaly: NewAnomaly): Promise<AnomalyRow | undefined> {
  const row = await trx
    .insertInto('anomalies')
    .values({
      id: newId('anomaly').uuid,
      merchant_id: anomaly.merchantId,
      kind: anomaly.type,
      type: anomaly.type,
      gateway: anomaly.gateway,
      payment_id: anomaly.paymentId ?? null,
      attempt_id: anomaly.attemptId ?? null,
      refund_id: anomaly.refundId ?? null,
      order_id: anomaly.orderId ?? null,
      partner_reference: anomaly.partnerReference ?? null,
      expected: JSON.stringify(anomaly.expected),
      actual: JSON.stringify(anomaly.actual),
      resolution: JSON.stringify(null),
      dedupe_key: anomaly.dedupeKey,
      detail: JSON.stringify({}),
    })
    .onConflict((conflict) => conflict.columns(['merchant_id', 'type', 'dedupe_key']).doNothing())
    .returningAll()
    .executeTakeFirst();
  if (row !== undefined) await appendEvent(trx, { merchantId: row.merchant_id, type: 'anomaly.opened', aggregateId: row.id, object: anomalyToApi(row) });
  return row;
}

/**
 * Resolves an open anomaly with the resolution given (`auto` with the action taken, or `manual` with a person's
 * note). Resolving a resolved one changes nothing and answers it as it is. `merchantId` undefined: any merchant's
 * (the operator).
 */
export async function resolveAnomaly(db: Db, publicId: string, merchantId: string | undefined, resolution: { kind: 'auto' | 'manual'; action: string; note: string | null }): Promise<AnomalyRow> {
  const id = publicToUuid('anomaly', publicId);
  if (id === undefined) throw new KeelError('resource_missing', `No such anomaly: ${publicId}.`, { param: 'id' });
  return db.transaction().execute(async (trx) => {
    let query = trx.selectFrom('anomalies').selectAll().where('id', '=', id).forUpdate();
    if (merchantId !== undefined) query = query.where('merchant_id', '=', merchantId);
    const row = await query.executeTakeFirst();
    if (row === undefined) throw new KeelError('resource_missing', `No such anomaly: ${publicId}.`, { param: 'id' });
    if (row.status === 'resolved') return row;
    const resolved = await trx
      .updateTable('anomalies')
      .set({ status: 'resolved', resolved_at: new Date(), resolution: JSON.stringify(resolution) })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
    await appendEvent(trx, { merchantId: resolved.merchant_id, type: 'anomaly.resolved', aggregateId: resolved.id, object: anomalyToApi(resolved) });
    return resolved;
  });
}

export interface AnomalyFilter {
  readonly merchantId?: string;
  readonly status?: 'open' | 'resolved';
  readonly type?: string;
}

export async function listAnomalies(db: Db, filter: AnomalyFilter, page: Page): Promise<AnomalyRow[]> {
  let query = db.selectFrom('anomalies').selectAll();
  if (filter.merchantId !== undefined) query = query.where('merchant_id', '=', filter.merchantId);
  if (filter.status !== undefined) query = query.where('status', '=', filter.status);
  if (filter.type !== undefined) query = query.where('type', '=', filter.type);
  return paged(query, page).execute();
}

export async function findAnomaly(db: Db, publicId: string, merchantId: string | undefined): Promise<AnomalyRow> {
  const id = publicToUuid('anomaly', publicId);
  if (id === undefined) throw new KeelError('resource_missing', `No such anomaly: ${publicId}.`, { param: 'id' });
  let query = db.selectFrom('anomalies').selectAll().where('id', '=', id);
  if (merchantId !== undefined) query = query.where('merchant_id', '=', merchantId);
  const row = await query.executeTakeFirst();
  if (row === undefined) throw new KeelError('resource_missing', `No such anomaly: ${publicId}.`, { param: 'id' });
  return row;
}

/**
 * The janitor's give-ups as `StuckProcessing` anomalies: Keel's side is the payment as it stands, the partner's
 * an answer it never gave. Passed to payments by the composition root.
 */
export const stuckAttemptsOf = (signals: SystemSignals): StuckAttempts => ({
  async record(trx, payment, attempt, inquiries) {
    const opened = await openAnomaly(trx, {
      merchantId: payment.merchantId,
      type: 'StuckProcessing',
      gateway: attempt.gateway,
      paymentId: payment.id,
      attemptId: attempt.id,
      orderId: payment.orderId,
      partnerReference: attempt.partnerPaymentId ?? null,
      expected: { amount: Number(attempt.amount), currency: payment.currency, status: payment.status, operation: attempt.operation },
      actual: { status: 'unknown', inquiries },
      dedupeKey: attempt.id,
    });
    if (opened !== undefined) signals.signal('anomaly', { type: 'StuckProcessing', gateway: attempt.gateway });
  },
});

/** `keel_anomalies_open{type,gateway}`, read from the database when `/metrics` is scraped (every instance agrees). */
export function registerAnomalyMetrics(registry: Registry, db: Db, logger: Logger): void {
  new Gauge({
    name: 'keel_anomalies_open',
    help: 'Open anomalies by type and partner (reconciliation and the janitor); money-moving types need a person',
    labelNames: ['type', 'gateway'],
    registers: [registry],
    async collect() {
      try {
        const rows = await db.selectFrom('anomalies').select(['type', 'gateway']).select((eb) => eb.fn.countAll<string>().as('open')).where('status', '=', 'open').groupBy(['type', 'gateway']).execute();
        this.reset();
        for (const row of rows) this.set({ type: row.type, gateway: row.gateway ?? 'none' }, Number(row.open));
      } catch (error) {
        logger.warn({ err_message: String(error) }, 'open anomalies metric unavailable');
      }
    },
  });
}
