import { randomBytes } from 'node:crypto';
import { sql, type Kysely, type Selectable } from 'kysely';
import type { Logger } from 'pino';
import { KeelError } from '../errors.js';
import { acquireLease, releaseLease } from '../events/relay.js';
import { gatewayNames, type GatewayName } from '../gateways/connector.js';
import { partnerUrl, type GatewayRegistry, type PartnerUrls } from '../gateways/registry.js';
import { partnerReport, type SettlementRow } from '../ledger/settlements.js';
import { loadMerchantContext } from '../merchants/merchants.js';
import type { MerchantContext } from '../merchants/types.js';
import type { FieldCipher } from '../storage/encryption.js';
import { newId, uuidToPublic } from '../storage/ids.js';
import { currencyRule } from '../money.js';
import type { KeelDatabase, PaymentRow, ReconciliationRunsTable } from '../storage/schema.js';
import { openAnomaly, resolveAnomaly, type NewAnomaly } from './anomalies.js';
import { askAgain } from '../payments/operations/ask-again.js';
import { partnerContext, type PaymentsDeps } from '../payments/operations/context.js';
import { findAttempt, findPayment } from '../payments/repository.js';

/**
 * One reconciliation run: a partner's report of one UTC day, for each merchant with that partner, compared
 * record by record with Keel's payments. What it finds is opened as typed anomalies (once: a second run of the
 * same day opens nothing twice), and one run of a partner and day writes at a time (a lease).
 *
 * Compared today, per merchant:
 * - every sale row against the payment it names (the partner's payment id): another amount or currency is
 *   `AmountMismatch`; a payment Keel holds uncaptured or canceled that the partner settled is
 *   `MismatchCaptureStatus`; a row that names no payment is `MissingLocally`, unless the partner settled more
 *   than one sale for the order, which is one `DuplicateCharge` (the total and the count);
 * - every payment Keel captured that day with no sale row: the partner is asked; if it has no record, or has
 *   not captured it, that is `MissingAtPartner` or `MismatchCaptureStatus` at once; if it has, the report may
 *   simply lag, and after `reportGraceDays` it is `MissingAtPartner` all the same.
 */
export const reportGraceDays = 2;

/**
 * The fee a partner's contract says a sale costs, in the sale's minor units, VAT included: Toss Payments 2.5%
 * plus 10% VAT on the fee; Stripe 2.9% plus 30 minor units outside zero-decimal currencies (their standard
 * pricing, which the benchmark gateway charges too). Rounded as the partners round, half away from zero.
 */
export function contractFee(gateway: GatewayName, amount: bigint, currency: string): bigint {
  const round = (numerator: bigint, denominator: bigint) => (numerator * 2n + denominator) / (denominator * 2n);
  if (gateway === 'toss') {
    const fee = round(amount * 25n, 1000n);
    return fee + round(fee, 10n);
  }
  return round(amount * 29n, 1000n) + ((currencyRule(currency)?.exponent ?? 2) === 0 ? 0n : 30n);
}
export const runLeaseMs = 15 * 60_000;
/** A daily run that failed (a partner's report unavailable) is tried again this long after it started. */
export const failedRunRetryMs = 15 * 60_000;

type Db = Kysely<KeelDatabase>;
export type RunRow = Selectable<ReconciliationRunsTable>;

export interface ReconcileDeps {
  readonly db: Db;
  readonly cipher: FieldCipher;
  readonly logger: Logger;
  readonly gateways: GatewayRegistry;
  readonly partnerUrls: PartnerUrls;
  /** What settling a payment by the partner's word needs (automatic resolution asks the partner again). */
  readonly payments: PaymentsDeps;
}

export interface ReconcileRequest {
  readonly gateway: GatewayName;
  /** `YYYY-MM-DD`, the UTC day of the captures. */
  readonly date: string;
  readonly merchantId?: string | undefined;
}

interface Tally {
  rowsRead: number;
  matched: number;
  opened: number;
  resolved: number;
}

export function runToApi(row: RunRow): Record<string, unknown> {
  return {
    id: uuidToPublic('reconciliationRun', row.id),
    object: 'reconciliation_run',
    gateway: row.gateway,
    date: row.day,
    merchant: row.merchant_id === null ? null : uuidToPublic('merchant', row.merchant_id),
    status: row.status,
    rows_read: row.rows_read,
    matched: row.matched,
    anomalies_opened: row.anomalies_opened,
    anomalies_resolved: row.anomalies_resolved,
    ...(row.error === null ? {} : { error: row.error }),
    started_at: new Date(row.started_at).toISOString(),
    finished_at: row.finished_at === null ? null : new Date(row.finished_at).toISOString(),
  };
}

const runColumns = ['id', 'gateway', sql<string>`to_char(day, 'YYYY-MM-DD')`.as('day'), 'merchant_id', 'status', 'rows_read', 'matched', 'anomalies_opened', 'anomalies_resolved', 'error', 'started_at', 'finished_at'] as const;

export async function listRuns(db: Db, limit: number): Promise<RunRow[]> {
  return (await db.selectFrom('reconciliation_runs').select(runColumns).orderBy('id', 'desc').limit(limit).execute()) as RunRow[];
}

export async function runReconciliation(deps: ReconcileDeps, request: ReconcileRequest): Promise<RunRow> {
  const { db } = deps;
  const leaseName = `reconcile:${request.gateway}:${request.date}`;
  const holder = `recon_${randomBytes(8).toString('hex')}`;
  if (!(await acquireLease(db, leaseName, holder, runLeaseMs))) {
    throw new KeelError('reconciliation_in_progress', `A reconciliation of ${request.gateway} for ${request.date} is already running; try again when it ends.`);
  }
  const id = newId('reconciliationRun').uuid;
  await db.insertInto('reconciliation_runs').values({ id, gateway: request.gateway, day: request.date, merchant_id: request.merchantId ?? null, status: 'running' }).execute();
  const tally: Tally = { rowsRead: 0, matched: 0, opened: 0, resolved: 0 };
  let status: 'succeeded' | 'failed' = 'succeeded';
  let error: string | null = null;
  try {
    let merchants = db.selectFrom('merchant_partners').select('merchant_id').where('gateway', '=', request.gateway).where('partner_secret_key_encrypted', 'is not', null);
    if (request.merchantId !== undefined) merchants = merchants.where('merchant_id', '=', request.merchantId);
    for (const { merchant_id: merchantId } of await merchants.orderBy('merchant_id').execute()) {
      const merchant = await loadMerchantContext(db, deps.cipher, merchantId);
      if (merchant !== undefined) await reconcileMerchant(deps, merchant, request, tally);
    }
  } catch (caught) {
    status = 'failed';
    error = caught instanceof Error ? caught.message : String(caught);
    deps.logger.error({ err: caught, gateway: request.gateway, date: request.date }, 'reconciliation run failed');
  } finally {
    await releaseLease(db, leaseName, holder);
  }
  await db
    .updateTable('reconciliation_runs')
    .set({ status, error, rows_read: tally.rowsRead, matched: tally.matched, anomalies_opened: tally.opened, anomalies_resolved: tally.resolved, finished_at: new Date() })
    .where('id', '=', id)
    .execute();
  const row = (await db.selectFrom('reconciliation_runs').select(runColumns).where('id', '=', id).executeTakeFirstOrThrow()) as RunRow;
  deps.logger.info({ run: runToApi(row) }, 'reconciliation run finished');
  return row;
}

/**
 * The workers' daily run: once the UTC clock has passed `reconcileAt`, the previous UTC day is reconciled with
 * each partner, once across all workers — a day already run (or running) is skipped, and the run's lease turns a
 * second worker's simultaneous attempt into a skip; a day whose run failed is tried again `failedRunRetryMs`
 * after that run started. Resolves to the runs it made.
 */
export async function reconcileYesterday(deps: ReconcileDeps, reconcileAt: string, now: Date = new Date()): Promise<RunRow[]> {
  if (now.toISOString().slice(11, 16) < reconcileAt) return [];
  const day = new Date(now.getTime() - 86_400_000).toISOString().slice(0, 10);
  const runs: RunRow[] = [];
  for (const gateway of gatewayNames) {
    const done = await deps.db
      .selectFrom('reconciliation_runs')
      .select('id')
      .where('gateway', '=', gateway)
      .where(sql<boolean>`day = ${day}::date`)
      .where('merchant_id', 'is', null)
      .where((eb) => eb.or([eb('status', 'in', ['running', 'succeeded']), eb('started_at', '>', new Date(Date.now() - failedRunRetryMs))]))
      .executeTakeFirst();
    if (done !== undefined) continue;
    try {
      runs.push(await runReconciliation(deps, { gateway, date: day }));
    } catch (error) {
      if (!(error instanceof KeelError && error.code === 'reconciliation_in_progress')) throw error;
    }
  }
  return runs;
}

async function reconcileMerchant(deps: ReconcileDeps, merchant: MerchantContext, request: ReconcileRequest, tally: Tally): Promise<void> {
  const partner = merchant.partners.find((candidate) => candidate.gateway === request.gateway);
  if (partner?.partnerSecretKey == null) return;
  // First what the partner can now settle, so that a payment it settles is compared as it now stands.
  await resolveStuck(deps, merchant, request.gateway, tally);
  const { rows } = await partnerReport(request.gateway, partnerUrl(deps.partnerUrls, request.gateway, merchant.livemode), partner.partnerSecretKey, { startDate: request.date, endDate: request.date });
  const sales = rows.filter((row) => row.kind === 'sale');
  tally.rowsRead += rows.length;
  const open = async (anomaly: Omit<NewAnomaly, 'merchantId' | 'gateway'>) => {
    const opened = await deps.db.transaction().execute((trx) => openAnomaly(trx, { ...anomaly, merchantId: merchant.id, gateway: request.gateway }));
    if (opened !== undefined) tally.opened += 1;
  };

  // The partner's sales, by the payment they name.
  const payments = await paymentsByPartnerId(deps.db, merchant.id, sales.map((row) => row.partnerPaymentId));
  const unmatchedByOrder = new Map<string, SettlementRow[]>();
  const settledPayments = new Set<string>();
  for (const row of sales) {
    const payment = payments.get(row.partnerPaymentId);
    if (payment === undefined) {
      const key = row.orderId ?? row.reference;
      unmatchedByOrder.set(key, [...(unmatchedByOrder.get(key) ?? []), row]);
      continue;
    }
    settledPayments.add(payment.id);
    const expected = { amount: Number(payment.amount_received), currency: payment.currency.trim(), status: payment.status };
    const actual = { amount: Number(row.gross), currency: row.currency, status: 'succeeded' };
    const where = { paymentId: payment.id, orderId: payment.order_id, partnerReference: row.reference };
    const fee = contractFee(request.gateway, row.gross, row.currency);
    if (BigInt(payment.amount_received) === 0n) {
      await open({ type: 'MismatchCaptureStatus', ...where, expected, actual, dedupeKey: `payment:${payment.id}` });
    } else if (BigInt(payment.amount_received) !== row.gross || payment.currency.trim() !== row.currency) {
      await open({ type: 'AmountMismatch', ...where, expected, actual, dedupeKey: `payment:${payment.id}` });
    } else if (row.fee !== fee) {
      await open({ type: 'FeeMismatch', ...where, expected: { amount: Number(fee), currency: row.currency, status: payment.status }, actual: { amount: Number(row.fee), currency: row.currency, status: payment.status }, dedupeKey: `fee:${row.reference}` });
    } else {
      tally.matched += 1;
    }
  }

  // Sales that name no payment of Keel's: a second charge for an order Keel charged once, or one Keel never made.
  for (const [key, orphans] of unmatchedByOrder) {
    const orderId = orphans[0]?.orderId ?? null;
    const charged = orderId === null ? undefined : await deps.db.selectFrom('payments').selectAll().where('merchant_id', '=', merchant.id).where('order_id', '=', orderId).executeTakeFirst();
    if (charged !== undefined) {
      const total = orphans.reduce((sum, row) => sum + row.gross, 0n) + BigInt(charged.amount_received);
      await open({
        type: 'DuplicateCharge',
        paymentId: charged.id,
        orderId,
        partnerReference: orphans.map((row) => row.reference).join(','),
        expected: { amount: Number(charged.amount_received), currency: charged.currency.trim(), status: charged.status },
        actual: { amount: Number(total), currency: orphans[0]?.currency ?? charged.currency.trim(), status: 'succeeded', charges: orphans.length + 1 },
        dedupeKey: `order:${key}`,
      });
      continue;
    }
    for (const row of orphans) {
      await open({ type: 'MissingLocally', orderId: row.orderId, partnerReference: row.reference, expected: null, actual: { amount: Number(row.gross), currency: row.currency, status: 'succeeded' }, dedupeKey: `reference:${row.reference}` });
    }
  }

  // The day's refunds, per payment: Keel's that succeeded that day against the partner's refund rows of the day.
  const partnerRefunds = new Map<string, bigint>();
  for (const row of rows) if (row.kind === 'refund') partnerRefunds.set(row.partnerPaymentId, (partnerRefunds.get(row.partnerPaymentId) ?? 0n) - row.gross);
  const keelRefunds = await refundedOn(deps.db, merchant.id, request.gateway, request.date);
  const refunded = await paymentsByPartnerId(deps.db, merchant.id, [...new Set([...partnerRefunds.keys(), ...keelRefunds.keys()])]);
  for (const [partnerPaymentId, payment] of refunded) {
    const ours = keelRefunds.get(partnerPaymentId) ?? 0n;
    const theirs = partnerRefunds.get(partnerPaymentId) ?? 0n;
    if (ours === theirs) continue;
    await open({
      type: 'RefundMismatch',
      paymentId: payment.id,
      orderId: payment.order_id,
      partnerReference: partnerPaymentId,
      expected: { amount: Number(ours), currency: payment.currency.trim(), status: payment.status },
      actual: { amount: Number(theirs), currency: payment.currency.trim(), status: payment.status },
      dedupeKey: `refunds:${payment.id}:${request.date}`,
    });
  }

  // Payments Keel captured that day with no sale in the report: the partner is asked.
  const captured = await capturedOn(deps.db, merchant.id, request.gateway, request.date);
  const dayEnded = Date.parse(`${request.date}T00:00:00Z`) + 86_400_000;
  for (const payment of captured) {
    if (settledPayments.has(payment.id)) continue;
    const expected = { amount: Number(payment.amount_received), currency: payment.currency.trim(), status: payment.status };
    const where = { paymentId: payment.id, orderId: payment.order_id, partnerReference: payment.partner_payment_id };
    const found = await inquire(deps, merchant, request.gateway, payment);
    if (found === 'absent') {
      await open({ type: 'MissingAtPartner', ...where, expected, actual: null, dedupeKey: `payment:${payment.id}` });
    } else if (found === 'uncaptured') {
      await open({ type: 'MismatchCaptureStatus', ...where, expected, actual: { amount: 0, currency: payment.currency.trim(), status: 'requires_capture' }, dedupeKey: `payment:${payment.id}` });
    } else if (found === 'captured' && Date.now() - dayEnded > reportGraceDays * 86_400_000) {
      // The partner holds the capture but has still not reported it: its books and its word disagree.
      await open({ type: 'MissingAtPartner', ...where, expected, actual: { amount: expected.amount, currency: expected.currency, status: 'succeeded', reported: false }, dedupeKey: `payment:${payment.id}` });
    }
  }
}

/**
 * Automatic resolution of `StuckProcessing`: the partner is asked again, through the same path the janitor
 * uses (the same request under the attempt's own key, or an inquiry believed only past the consistency window).
 * If that settles the attempt, the payment moved by the partner's proven word, with its ledger entries and
 * events as any settlement writes them, and the anomaly is resolved `auto` with what happened. Nothing is sent
 * that could move money a second time.
 */
async function resolveStuck(deps: ReconcileDeps, merchant: MerchantContext, gateway: GatewayName, tally: Tally): Promise<void> {
  const stuck = await deps.db.selectFrom('anomalies').selectAll().where('merchant_id', '=', merchant.id).where('type', '=', 'StuckProcessing').where('gateway', '=', gateway).where('status', '=', 'open').execute();
  for (const anomaly of stuck) {
    if (anomaly.attempt_id === null || anomaly.payment_id === null) continue;
    const attempt = await findAttempt(deps.db, merchant.id, anomaly.attempt_id);
    const payment = await findPayment(deps.db, merchant.id, anomaly.payment_id);
    if (attempt === undefined || payment === undefined) continue;
    if (attempt.status === 'unknown') await askAgain({ deps: deps.payments, merchant, key: null }, attempt, payment);
    const settled = await findAttempt(deps.db, merchant.id, anomaly.attempt_id);
    if (settled === undefined || settled.status === 'unknown') continue;
    const now = await findPayment(deps.db, merchant.id, anomaly.payment_id);
    await resolveAnomaly(deps.db, uuidToPublic('anomaly', anomaly.id), merchant.id, {
      kind: 'auto',
      action: `the partner answered: the ${settled.operation} is ${settled.status}, the payment ${now?.status ?? 'unchanged'}`,
      note: null,
    });
    tally.resolved += 1;
  }
}

async function paymentsByPartnerId(db: Db, merchantId: string, partnerIds: readonly string[]): Promise<Map<string, PaymentRow>> {
  const ids = [...new Set(partnerIds.filter((id) => id !== ''))];
  const found = new Map<string, PaymentRow>();
  for (let offset = 0; offset < ids.length; offset += 500) {
    const rows = await db.selectFrom('payments').selectAll().where('merchant_id', '=', merchantId).where('partner_payment_id', 'in', ids.slice(offset, offset + 500)).execute();
    for (const row of rows) if (row.partner_payment_id !== null) found.set(row.partner_payment_id, row);
  }
  return found;
}

/** The merchant's payments at this partner whose capture Keel booked on the day (the ledger's capture entry). */
async function capturedOn(db: Db, merchantId: string, gateway: GatewayName, date: string): Promise<PaymentRow[]> {
  return db
    .selectFrom('payments')
    .selectAll('payments')
    .innerJoin('ledger_transactions', (join) => join.onRef('ledger_transactions.payment_id', '=', 'payments.id').on('ledger_transactions.kind', '=', 'capture'))
    .where('payments.merchant_id', '=', merchantId)
    .where('payments.gateway', '=', gateway)
    .where(sql<boolean>`ledger_transactions.created_at >= ${date}::date AND ledger_transactions.created_at < ${date}::date + 1`)
    .execute();
}

/** The merchant's succeeded refunds of the day at this partner, totalled by the partner's payment id. */
async function refundedOn(db: Db, merchantId: string, gateway: GatewayName, date: string): Promise<Map<string, bigint>> {
  const rows = await db
    .selectFrom('refunds')
    .innerJoin('payments', (join) => join.onRef('payments.id', '=', 'refunds.payment_id').onRef('payments.merchant_id', '=', 'refunds.merchant_id'))
    .select(['payments.partner_payment_id as partner_payment_id', 'refunds.amount as amount'])
    .where('refunds.merchant_id', '=', merchantId)
    .where('refunds.status', '=', 'succeeded')
    .where('payments.gateway', '=', gateway)
    .where(sql<boolean>`refunds.created_at >= ${date}::date AND refunds.created_at < ${date}::date + 1`)
    .execute();
  const totals = new Map<string, bigint>();
  for (const row of rows) if (row.partner_payment_id !== null) totals.set(row.partner_payment_id, (totals.get(row.partner_payment_id) ?? 0n) + BigInt(row.amount));
  return totals;
}

/** What the partner says of a payment Keel captured: no record, held but not captured, or captured. */
async function inquire(deps: ReconcileDeps, merchant: MerchantContext, gateway: GatewayName, payment: PaymentRow): Promise<'absent' | 'uncaptured' | 'captured' | 'unknown'> {
  const answer = await deps.gateways.connector(gateway).inquire(partnerContext(merchant, gateway, `keel_reconcile_${payment.id}`), {
    attemptId: `reconcile_${payment.id}`,
    operation: 'capture',
    orderId: payment.order_id,
    partnerPaymentId: payment.partner_payment_id,
    amount: BigInt(payment.amount_received),
  });
  if (answer.kind !== 'ok') return 'unknown';
  const found = answer.value;
  if (found.state === 'absent') return 'absent';
  if (found.state === 'succeeded') return found.captured ? 'captured' : 'uncaptured';
  return 'unknown';
}
