import { randomBytes } from 'node:crypto';
import { sql, type Kysely, type RawBuilder, type Selectable } from 'kysely';
import type { Logger } from 'pino';
import { KeelError } from '../errors.js';
import { acquireLease, releaseLease } from '../events/relay.js';
import { gatewayNames, type GatewayName } from '../gateways/connector.js';
import { partnerUrl, type GatewayRegistry, type PartnerUrls } from '../gateways/registry.js';
import { receivable } from '../ledger/ledger.js';
import { partnerReportPages, settleRows, type SettlementRow } from '../ledger/settlements.js';
import { loadMerchantContext } from '../merchants/merchants.js';
import type { ContractFeeTerms, MerchantContext } from '../merchants/types.js';
import type { FieldCipher } from '../storage/encryption.js';
import { newId, uuidToPublic } from '../storage/ids.js';
import { currencyRule } from '../money.js';
import type { KeelDatabase, PaymentRow, ReconciliationRunsTable } from '../storage/schema.js';
import { openAnomaly, resolveAnomaly, type AnomalyRow, type NewAnomaly } from './anomalies.js';
import { askAgain } from '../payments/operations/ask-again.js';
import { partnerContext, type PaymentsDeps } from '../payments/operations/context.js';
import { findAttempt, findPayment, liveAttempts } from '../payments/repository.js';
import type { Attempt, Payment } from '../payments/types.js';

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
 *   simply lag, and after `reportGraceDays` it is `MissingAtPartner` all the same;
 * - the day's refunds per payment (`RefundMismatch`) and each sale's fee against the contract (`FeeMismatch`);
 * - in aggregate, per currency, what the ledger says the partner still holds for the merchant at the end of the
 *   day (`partner_receivable:<partner>`) against the partner's own total sold and not yet paid out, read from its
 *   reports of the day and the `payoutWindowDays` before (`BalanceMismatch`). The run first books the rows the
 *   partner paid out by then, so that both sides stand at the same moment.
 */
export const reportGraceDays = 2;
/**
 * Days before the reconciled day whose reports are read for what the partner has still not paid out: a sale
 * unpaid for longer is no longer counted on the partner's side, so it shows as `BalanceMismatch`.
 */
export const payoutWindowDays = 7;

/** A partner's fee schedule: the contract's terms, and the VAT the partner adds to its fee (percent). */
export interface FeeSchedule extends ContractFeeTerms {
  readonly vatPercent: number;
}

/**
 * The partners' standard pricing, which the benchmark gateway charges too: Toss Payments 2.5% plus 10% VAT on
 * the fee; Stripe 2.9% plus 30 minor units outside zero-decimal currencies.
 */
export const standardFees: Readonly<Record<GatewayName, FeeSchedule>> = {
  toss: { rateBps: 250, fixed: 0n, vatPercent: 10 },
  stripe: { rateBps: 290, fixed: 30n, vatPercent: 0 },
};

/** The merchant's fee schedule at a partner: its negotiated terms (`toss_fee`, `stripe_fee`), else standard pricing. */
export function merchantFees(merchant: MerchantContext, gateway: GatewayName): FeeSchedule {
  const negotiated = merchant.partners.find((partner) => partner.gateway === gateway)?.contractFee;
  return negotiated == null ? standardFees[gateway] : { ...negotiated, vatPercent: standardFees[gateway].vatPercent };
}

/**
 * The fee a schedule says a sale costs, in the sale's minor units, VAT included, in integers: the rate's part
 * and VAT each rounded as the partners round, halves away from zero.
 */
export function contractFee(fees: FeeSchedule, amount: bigint, currency: string): bigint {
  const round = (numerator: bigint, denominator: bigint) => (numerator * 2n + denominator) / (denominator * 2n);
  const fee = round(amount * BigInt(fees.rateBps), 10_000n) + ((currencyRule(currency)?.exponent ?? 2) === 0 ? 0n : fees.fixed);
  return fee + round(fee * BigInt(fees.vatPercent), 100n);
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
  const scope: RunScope = { runId: id, request, tally, startedAt: Date.now() };
  let status: 'succeeded' | 'failed' = 'succeeded';
  let error: string | null = null;
  try {
    // Rows a run left behind when its process died (a run removes its own as it goes).
    await db.deleteFrom('reconciliation_rows').where('run_id', 'not in', db.selectFrom('reconciliation_runs').select('id').where('status', '=', 'running').where('started_at', '>', new Date(Date.now() - runLeaseMs))).execute();
    let merchants = db.selectFrom('merchant_partners').select('merchant_id').where('gateway', '=', request.gateway).where('partner_secret_key_encrypted', 'is not', null);
    if (request.merchantId !== undefined) merchants = merchants.where('merchant_id', '=', request.merchantId);
    for (const { merchant_id: merchantId } of await merchants.orderBy('merchant_id').execute()) {
      const merchant = await loadMerchantContext(db, deps.cipher, merchantId);
      if (merchant !== undefined) await reconcileMerchant(deps, merchant, scope);
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

/** Report rows staged per statement (one array parameter per column, so a statement's size never limits it). */
const stageBatchRows = 10_000;
/** Findings read back per query, by keyset. */
const findingsBatch = 1_000;
/** How often a long run logs its progress and writes `rows_read` on its run row. */
const progressEveryMs = 5_000;

interface RunScope {
  readonly runId: string;
  readonly request: ReconcileRequest;
  readonly tally: Tally;
  readonly startedAt: number;
}

/**
 * One merchant's part of a run. The partner's report is read page by page and staged (each row already joined
 * to the payment it names); the comparisons are then set-based queries that bring back only what disagrees, in
 * keyset batches, so memory stays flat whatever the day's size. The staged rows are removed when the merchant is
 * done.
 */
async function reconcileMerchant(deps: ReconcileDeps, merchant: MerchantContext, scope: RunScope): Promise<void> {
  const { request, tally } = scope;
  const partner = merchant.partners.find((candidate) => candidate.gateway === request.gateway);
  if (partner?.partnerSecretKey == null) return;
  // First what the partner can now settle, so that a payment it settles is compared as it now stands.
  await resolveStuck(deps, merchant, request.gateway, tally);
  const open = async (anomaly: Omit<NewAnomaly, 'merchantId' | 'gateway'>) => {
    const opened = await deps.db.transaction().execute((trx) => openAnomaly(trx, { ...anomaly, merchantId: merchant.id, gateway: request.gateway }));
    if (opened !== undefined) {
      tally.opened += 1;
      deps.payments.metrics.signals.signal('anomaly', { type: opened.type, gateway: request.gateway });
    }
    return opened;
  };
  try {
    const payouts = new Payouts(deps.db, merchant.id, request.gateway, request.date);
    const sales = await stageReport(deps, merchant, partner.partnerSecretKey, scope, payouts);
    await readPayoutWindow(deps, merchant, partner.partnerSecretKey, scope, payouts);
    // Fresh statistics, or the planner takes the staged rows for an empty table and joins them row by row.
    await scanning(deps.db, (trx) => sql`ANALYZE reconciliation_rows`.execute(trx));
    await finishReported(deps, merchant, scope, open);
    const flagged = await compareSales(deps, scope, open);
    const unmatched = await compareUnmatched(deps, merchant, scope, open);
    tally.matched += sales - flagged - unmatched;
    await compareRefunds(deps, merchant, scope, open);
    await compareCaptures(deps, merchant, scope, open);
    await compareBalance(deps, merchant, scope, payouts, open);
    if (payouts.booked > 0) deps.logger.info({ gateway: request.gateway, date: request.date, merchant_id: merchant.id, settlements_booked: payouts.booked }, 'reconciliation booked what the partner paid out');
  } finally {
    await deps.db.deleteFrom('reconciliation_rows').where('run_id', '=', scope.runId).execute();
  }
}

type Open = (anomaly: Omit<NewAnomaly, 'merchantId' | 'gateway'>) => Promise<AnomalyRow | undefined>;

/**
 * The partner's side of the balance, gathered from its report rows as they are read: a row the partner had paid
 * out by the reconciled day is booked into the ledger (once; `settleRows`), a row it had not is added to what it
 * still holds, per currency. Rows of days after the reconciled day are left to a later run.
 */
class Payouts {
  readonly unsettled = new Map<string, bigint>();
  booked = 0;

  constructor(
    private readonly db: Db,
    private readonly merchantId: string,
    private readonly gateway: GatewayName,
    private readonly day: string,
  ) {}

  async take(rows: readonly SettlementRow[]): Promise<void> {
    const paid: SettlementRow[] = [];
    for (const row of rows) {
      if (row.soldOn > this.day) continue;
      if (row.paidOn !== null && row.paidOn <= this.day) paid.push(row);
      else this.unsettled.set(row.currency, (this.unsettled.get(row.currency) ?? 0n) + row.gross);
    }
    this.booked += (await settleRows(this.db, this.merchantId, this.gateway, paid)).settled;
  }
}

/** The partner's reports of the `payoutWindowDays` before the day, for what it had paid out by then and what not. */
async function readPayoutWindow(deps: ReconcileDeps, merchant: MerchantContext, secretKey: string, scope: RunScope, payouts: Payouts): Promise<void> {
  const { request } = scope;
  const first = Date.parse(`${request.date}T00:00:00Z`);
  for (let back = payoutWindowDays; back >= 1; back -= 1) {
    const day = new Date(first - back * 86_400_000).toISOString().slice(0, 10);
    for await (const page of reportOfDay(deps, merchant, secretKey, request.gateway, day)) await payouts.take(page.rows);
  }
}

/** The partner's report of one UTC day for the merchant, page by page. */
function reportOfDay(deps: ReconcileDeps, merchant: MerchantContext, secretKey: string, gateway: GatewayName, day: string) {
  return partnerReportPages(gateway, partnerUrl(deps.partnerUrls, gateway, merchant.livemode), secretKey, { startDate: day, endDate: day });
}

/** Reads the partner's report of the day into `reconciliation_rows`; resolves to the number of sale rows. */
async function stageReport(deps: ReconcileDeps, merchant: MerchantContext, secretKey: string, scope: RunScope, payouts: Payouts): Promise<number> {
  const { request, tally } = scope;
  const fees = merchantFees(merchant, request.gateway);
  const pages = reportOfDay(deps, merchant, secretKey, request.gateway, request.date);
  let sales = 0;
  let reported = Date.now();
  // The next page is fetched while this one is written: the partner's answer and the database's overlap.
  const iterator = pages[Symbol.asyncIterator]();
  for (let next = iterator.next(); ; ) {
    const current = await next;
    if (current.done === true) break;
    const page = current.value;
    next = iterator.next();
    next.catch(() => undefined); // awaited on the next turn; a failure is thrown there, not lost
    for (let offset = 0; offset < page.rows.length; offset += stageBatchRows) {
      const batch = page.rows.slice(offset, offset + stageBatchRows);
      const column = <T>(of: (row: SettlementRow) => T) => batch.map(of);
      await sql`
        INSERT INTO reconciliation_rows (run_id, merchant_id, reference, partner_payment_id, kind, order_id, currency, gross, fee, contract_fee, payment_id)
        SELECT ${scope.runId}::uuid, ${merchant.id}::uuid, r.reference, r.partner_payment_id, r.kind, r.order_id, r.currency, r.gross, r.fee, r.contract_fee, p.id
        FROM unnest(${column((row) => row.reference)}::text[], ${column((row) => row.partnerPaymentId)}::text[], ${column((row) => row.kind)}::text[],
                    ${column((row) => row.orderId)}::text[], ${column((row) => row.currency)}::text[], ${column((row) => row.gross.toString())}::bigint[],
                    ${column((row) => row.fee.toString())}::bigint[], ${column((row) => (row.kind === 'sale' ? contractFee(fees, row.gross, row.currency) : 0n).toString())}::bigint[])
          AS r(reference, partner_payment_id, kind, order_id, currency, gross, fee, contract_fee)
        LEFT JOIN payments p ON p.merchant_id = ${merchant.id}::uuid AND p.partner_payment_id = r.partner_payment_id AND r.partner_payment_id <> ''`.execute(deps.db);
      await payouts.take(batch);
      tally.rowsRead += batch.length;
      sales += batch.filter((row) => row.kind === 'sale').length;
    }
    if (Date.now() - reported >= progressEveryMs) {
      reported = Date.now();
      await deps.db.updateTable('reconciliation_runs').set({ rows_read: tally.rowsRead }).where('id', '=', scope.runId).execute();
      deps.logger.info({ gateway: request.gateway, date: request.date, merchant_id: merchant.id, rows_read: tally.rowsRead, rows_per_second: Math.round(tally.rowsRead / ((Date.now() - scope.startedAt) / 1000)) }, 'reconciliation progress');
    }
  }
  return sales;
}

/**
 * A comparison query may read a whole day (a million staged rows) before it finds its batch: it runs in a
 * transaction of its own with a statement timeout fit for a batch job instead of the API's.
 */
export const comparisonTimeoutMs = 300_000;

function scanning<T>(db: Db, query: (db: Db) => Promise<T>): Promise<T> {
  return db.transaction().execute(async (trx) => {
    await sql`SET LOCAL statement_timeout = ${sql.lit(comparisonTimeoutMs)}`.execute(trx);
    return query(trx);
  });
}

/** The rows of one comparison query, run as `scanning` runs it. */
async function scannedRows<T>(db: Db, query: RawBuilder<T>): Promise<T[]> {
  return (await scanning(db, (trx) => query.execute(trx))).rows;
}

/** Reads a query's rows in keyset batches: `fetch(after)` answers the next `findingsBatch` rows past `after`. */
async function* inBatches<T, K = string>(fetch: (after: K) => Promise<T[]>, keyOf: (row: T) => K, first: K): AsyncGenerator<T> {
  let after = first;
  for (;;) {
    const rows = await fetch(after);
    yield* rows;
    const last = rows.at(-1);
    if (rows.length < findingsBatch || last === undefined) return;
    after = keyOf(last);
  }
}

const noUuid = '00000000-0000-0000-0000-000000000000';
const money = (value: string | bigint) => Number(value);

/**
 * Sale rows that name a payment of Keel's and disagree with it: a payment Keel holds uncaptured or canceled is
 * `MismatchCaptureStatus`, another amount or currency `AmountMismatch`, a fee other than the contract's
 * `FeeMismatch`. Resolves to how many rows disagreed.
 */
async function compareSales(deps: ReconcileDeps, scope: RunScope, open: Open): Promise<number> {
  interface Row {
    reference: string;
    row_currency: string;
    gross: string;
    fee: string;
    contract_fee: string;
    payment_id: string;
    order_id: string;
    currency: string;
    amount_received: string;
    status: string;
  }
  const rows = inBatches(
    (after) =>
      scannedRows(
        deps.db,
        sql<Row>`
          SELECT r.reference, r.currency AS row_currency, r.gross, r.fee, r.contract_fee,
                 p.id AS payment_id, p.order_id, trim(p.currency) AS currency, p.amount_received, p.status
          FROM reconciliation_rows r JOIN payments p ON p.id = r.payment_id
          WHERE r.run_id = ${scope.runId} AND r.kind = 'sale' AND r.payment_id IS NOT NULL
            AND (r.payment_id, r.reference) > (${after.paymentId}::uuid, ${after.reference})
            AND (p.amount_received = 0 OR p.amount_received <> r.gross OR trim(p.currency) <> r.currency OR r.fee <> r.contract_fee)
          ORDER BY r.payment_id, r.reference LIMIT ${findingsBatch}`,
      ),
    (row) => ({ paymentId: row.payment_id, reference: row.reference }),
    { paymentId: noUuid, reference: '' },
  );
  let flagged = 0;
  for await (const row of rows) {
    flagged += 1;
    const expected = { amount: money(row.amount_received), currency: row.currency, status: row.status };
    const actual = { amount: money(row.gross), currency: row.row_currency, status: 'succeeded' };
    const where = { paymentId: row.payment_id, orderId: row.order_id, partnerReference: row.reference };
    if (BigInt(row.amount_received) === 0n) {
      await open({ type: 'MismatchCaptureStatus', ...where, expected, actual, dedupeKey: `payment:${row.payment_id}` });
    } else if (row.amount_received !== row.gross || row.currency !== row.row_currency) {
      await open({ type: 'AmountMismatch', ...where, expected, actual, dedupeKey: `payment:${row.payment_id}` });
    } else {
      const fee = (amount: string) => ({ amount: money(amount), currency: row.row_currency, status: row.status });
      await open({ type: 'FeeMismatch', ...where, expected: fee(row.contract_fee), actual: fee(row.fee), dedupeKey: `fee:${row.reference}` });
    }
  }
  return flagged;
}

/**
 * Sale rows that name no payment of Keel's, by order: a second charge for an order Keel charged once is one
 * `DuplicateCharge` (the total and the count), a charge for no order of Keel's a `MissingLocally` per row.
 * Resolves to how many rows were unmatched.
 */
async function compareUnmatched(deps: ReconcileDeps, merchant: MerchantContext, scope: RunScope, open: Open): Promise<number> {
  interface Group {
    key: string;
    order_id: string | null;
    references: string[];
    amounts: string[];
    currency: string;
    total: string;
    payment_id: string | null;
    amount_received: string | null;
    payment_currency: string | null;
    status: string | null;
  }
  const groups = inBatches(
    (after) =>
      scannedRows(
        deps.db,
        sql<Group>`
          SELECT g.*, p.id AS payment_id, p.amount_received, trim(p.currency) AS payment_currency, p.status
          FROM (SELECT coalesce(order_id, reference) AS key, min(order_id) AS order_id, array_agg(reference ORDER BY reference) AS references,
                       array_agg(gross::text ORDER BY reference) AS amounts, min(currency) AS currency, sum(gross)::text AS total
                FROM reconciliation_rows
                WHERE run_id = ${scope.runId} AND payment_id IS NULL AND kind = 'sale' AND coalesce(order_id, reference) > ${after}
                GROUP BY 1 ORDER BY 1 LIMIT ${findingsBatch}) g
          LEFT JOIN payments p ON p.merchant_id = ${merchant.id} AND p.order_id = g.order_id
          ORDER BY g.key`,
      ),
    (group) => group.key,
    '',
  );
  let unmatched = 0;
  for await (const group of groups) {
    unmatched += group.references.length;
    if (group.payment_id !== null && group.status === 'processing' && group.payment_currency !== null) {
      // The partner charged an order Keel still holds as processing, and would not say so when asked again.
      await open({
        type: 'MismatchCaptureStatus',
        paymentId: group.payment_id,
        orderId: group.order_id,
        partnerReference: group.references.join(','),
        expected: { amount: 0, currency: group.payment_currency, status: 'processing' },
        actual: { amount: money(group.total), currency: group.currency, status: 'succeeded', charges: group.references.length },
        dedupeKey: `payment:${group.payment_id}`,
      });
      continue;
    }
    if (group.payment_id !== null && group.amount_received !== null && group.payment_currency !== null && group.status !== null) {
      await open({
        type: 'DuplicateCharge',
        paymentId: group.payment_id,
        orderId: group.order_id,
        partnerReference: group.references.join(','),
        expected: { amount: money(group.amount_received), currency: group.payment_currency, status: group.status },
        actual: { amount: money(BigInt(group.total) + BigInt(group.amount_received)), currency: group.currency, status: 'succeeded', charges: group.references.length + 1 },
        dedupeKey: `order:${group.key}`,
      });
      continue;
    }
    for (const [index, reference] of group.references.entries()) {
      const actual = { amount: money(group.amounts[index] ?? '0'), currency: group.currency, status: 'succeeded' };
      await open({ type: 'MissingLocally', orderId: group.order_id, partnerReference: reference, expected: null, actual, dedupeKey: `reference:${reference}` });
    }
  }
  return unmatched;
}

/** The day's refunds, per payment: Keel's that succeeded that day against the partner's refund rows of the day. */
async function compareRefunds(deps: ReconcileDeps, merchant: MerchantContext, scope: RunScope, open: Open): Promise<void> {
  const { request } = scope;
  interface Row {
    payment_id: string;
    order_id: string;
    partner_payment_id: string | null;
    currency: string;
    status: string;
    ours: string;
    theirs: string;
  }
  const rows = inBatches(
    (after) =>
      scannedRows(
        deps.db,
        sql<Row>`
          WITH theirs AS (
            SELECT payment_id, -sum(gross) AS total FROM reconciliation_rows
            WHERE run_id = ${scope.runId} AND kind = 'refund' AND payment_id IS NOT NULL GROUP BY payment_id),
          ours AS (
            SELECT f.payment_id, sum(f.amount) AS total FROM refunds f JOIN payments p ON p.id = f.payment_id
            WHERE f.merchant_id = ${merchant.id} AND f.status = 'succeeded' AND p.gateway = ${request.gateway}
              AND f.created_at >= ${request.date}::date AND f.created_at < ${request.date}::date + 1
            GROUP BY f.payment_id)
          SELECT p.id AS payment_id, p.order_id, p.partner_payment_id, trim(p.currency) AS currency, p.status,
                 coalesce(ours.total, 0)::text AS ours, coalesce(theirs.total, 0)::text AS theirs
          FROM ours FULL JOIN theirs USING (payment_id) JOIN payments p ON p.id = payment_id
          WHERE coalesce(ours.total, 0) <> coalesce(theirs.total, 0) AND p.id > ${after}::uuid
          ORDER BY p.id LIMIT ${findingsBatch}`,
      ),
    (row) => row.payment_id,
    noUuid,
  );
  for await (const row of rows) {
    await open({
      type: 'RefundMismatch',
      paymentId: row.payment_id,
      orderId: row.order_id,
      partnerReference: row.partner_payment_id,
      expected: { amount: money(row.ours), currency: row.currency, status: row.status },
      actual: { amount: money(row.theirs), currency: row.currency, status: row.status },
      dedupeKey: `refunds:${row.payment_id}:${request.date}`,
    });
  }
}

/**
 * Payments Keel captured that day (the ledger's capture entry, by the day its request was sent) with no sale in
 * the report: the partner is asked.
 * No record, or not captured, is `MissingAtPartner` or `MismatchCaptureStatus` at once; captured but not reported
 * may be the report lagging, and is `MissingAtPartner` only after `reportGraceDays`.
 */
async function compareCaptures(deps: ReconcileDeps, merchant: MerchantContext, scope: RunScope, open: Open): Promise<void> {
  const { request } = scope;
  const captured = inBatches(
    (after) =>
      scanning(deps.db, (trx) => trx
        .selectFrom('ledger_transactions')
        .innerJoin('payments', 'payments.id', 'ledger_transactions.payment_id')
        .distinctOn('payments.id')
        .selectAll('payments')
        .where('ledger_transactions.merchant_id', '=', merchant.id)
        .where('ledger_transactions.kind', '=', 'capture')
        .where(sql<boolean>`ledger_transactions.effective_date = ${request.date}::date`)
        .where('payments.gateway', '=', request.gateway)
        .where('payments.id', '>', after)
        .where((eb) => eb.not(eb.exists(eb.selectFrom('reconciliation_rows').select('reconciliation_rows.run_id').where('reconciliation_rows.run_id', '=', scope.runId).whereRef('reconciliation_rows.payment_id', '=', 'payments.id').where('reconciliation_rows.kind', '=', 'sale'))))
        .orderBy('payments.id')
        .limit(findingsBatch)
        .execute()),
    (payment) => payment.id,
    noUuid,
  );
  const dayEnded = Date.parse(`${request.date}T00:00:00Z`) + 86_400_000;
  for await (const payment of captured) {
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
 * The aggregate: per currency, what the ledger says the partner held for the merchant at the end of the
 * reconciled day — the receivable's captures and refunds of that day and before, less the settlements paid out
 * by then, each by the day it took effect at the partner (`effective_date`) — against the partner's own total
 * sold by that day and not paid out by it. Any difference is one
 * `BalanceMismatch` per currency and day, whatever the record-level comparisons also found: it is the net under
 * them (an entry the ledger lost or gained, money the partner holds for no payment of Keel's).
 */
async function compareBalance(deps: ReconcileDeps, merchant: MerchantContext, scope: RunScope, payouts: Payouts, open: Open): Promise<void> {
  const { request } = scope;
  const ledger = await scannedRows(
    deps.db,
    sql<{ currency: string; total: string }>`
      SELECT trim(e.currency) AS currency, sum(e.amount)::text AS total
      FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
      WHERE e.merchant_id = ${merchant.id} AND e.account = ${receivable(request.gateway)}
        AND t.effective_date <= ${request.date}::date
      GROUP BY 1`,
  );
  const ours = new Map(ledger.map((row) => [row.currency, BigInt(row.total)]));
  for (const currency of [...new Set([...ours.keys(), ...payouts.unsettled.keys()])].sort()) {
    const expected = ours.get(currency) ?? 0n;
    const actual = payouts.unsettled.get(currency) ?? 0n;
    if (expected === actual) continue;
    await open({ type: 'BalanceMismatch', expected: { amount: money(expected), currency }, actual: { amount: money(actual), currency }, dedupeKey: `balance:${request.gateway}:${currency}:${request.date}` });
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
    const settled = await askPartnerAgain(deps, merchant, anomaly.attempt_id, anomaly.payment_id);
    if (settled === undefined || settled.attempt.status === 'unknown') continue;
    await resolveAnomaly(deps.db, uuidToPublic('anomaly', anomaly.id), merchant.id, {
      kind: 'auto',
      action: `the partner answered: the ${settled.attempt.operation} is ${settled.attempt.status}, the payment ${settled.payment.status}`,
      note: null,
    });
    tally.resolved += 1;
  }
}

/**
 * Asks the partner again about an attempt whose outcome Keel does not know, by the janitor's path (the same
 * request under the attempt's own key, or an inquiry believed only past the consistency window); resolves to
 * the attempt and its payment as they stand after the answer.
 */
async function askPartnerAgain(deps: ReconcileDeps, merchant: MerchantContext, attemptId: string, paymentId: string): Promise<{ attempt: Attempt; payment: Payment } | undefined> {
  const attempt = await findAttempt(deps.db, merchant.id, attemptId);
  const payment = await findPayment(deps.db, merchant.id, paymentId);
  if (attempt === undefined || payment === undefined) return undefined;
  if (attempt.status === 'unknown') await askAgain({ deps: deps.payments, merchant, key: null }, attempt, payment);
  const settled = await findAttempt(deps.db, merchant.id, attemptId);
  const now = await findPayment(deps.db, merchant.id, paymentId);
  return settled === undefined || now === undefined ? undefined : { attempt: settled, payment: now };
}

/**
 * A sale the partner reports for a payment Keel still holds `processing` (a call whose answer was lost): the
 * report is the partner's word that it charged, so Keel asks again by the janitor's path, which settles the
 * attempt with its ledger entries and events as any answer would. When that leaves the payment captured, the
 * `MismatchCaptureStatus` is opened and resolved `auto` at once, saying what was done, and the report row is
 * joined to the payment so the comparisons see it as it now stands. One the partner still will not answer stays
 * open. Nothing is sent that could charge a second time.
 */
async function finishReported(deps: ReconcileDeps, merchant: MerchantContext, scope: RunScope, open: Open): Promise<void> {
  interface Row {
    payment_id: string;
    order_id: string;
    currency: string;
    reference: string;
    gross: string;
    row_currency: string;
  }
  const reported = inBatches(
    (after) =>
      scannedRows(
        deps.db,
        sql<Row>`
          SELECT p.id AS payment_id, p.order_id, trim(p.currency) AS currency, s.reference, s.gross, s.currency AS row_currency
          FROM payments p
          CROSS JOIN LATERAL (
            (SELECT reference, gross, currency FROM reconciliation_rows r
             WHERE r.run_id = ${scope.runId} AND r.kind = 'sale' AND r.payment_id = p.id LIMIT 1)
            UNION ALL
            (SELECT reference, gross, currency FROM reconciliation_rows r
             WHERE r.run_id = ${scope.runId} AND r.kind = 'sale' AND r.payment_id IS NULL AND coalesce(r.order_id, r.reference) = p.order_id AND r.order_id IS NOT NULL LIMIT 1)
            LIMIT 1) s
          WHERE p.merchant_id = ${merchant.id} AND p.gateway = ${scope.request.gateway} AND p.status = 'processing' AND p.id > ${after}::uuid
          ORDER BY p.id LIMIT ${findingsBatch}`,
      ),
    (row) => row.payment_id,
    noUuid,
  );
  for await (const row of reported) {
    const unknown = (await liveAttempts(deps.db, merchant.id, row.payment_id)).filter((attempt) => attempt.status === 'unknown');
    let settled: { attempt: Attempt; payment: Payment } | undefined;
    for (const attempt of unknown) settled = (await askPartnerAgain(deps, merchant, attempt.id, row.payment_id)) ?? settled;
    if (settled === undefined || settled.payment.amountReceived === 0n) continue;
    const anomaly = await open({
      type: 'MismatchCaptureStatus',
      paymentId: row.payment_id,
      orderId: row.order_id,
      partnerReference: row.reference,
      expected: { amount: 0, currency: row.currency, status: 'processing' },
      actual: { amount: money(row.gross), currency: row.row_currency, status: 'succeeded' },
      dedupeKey: `payment:${row.payment_id}`,
    });
    if (anomaly !== undefined) {
      await resolveAnomaly(deps.db, uuidToPublic('anomaly', anomaly.id), merchant.id, {
        kind: 'auto',
        action: `the partner reported the sale ${row.reference}; asked again, it answered: the ${settled.attempt.operation} is ${settled.attempt.status}, the payment ${settled.payment.status}`,
        note: null,
      });
      scope.tally.resolved += 1;
    }
    await deps.db.updateTable('reconciliation_rows').set({ payment_id: row.payment_id }).where('run_id', '=', scope.runId).where('reference', '=', row.reference).execute();
  }
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
