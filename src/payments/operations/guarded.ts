import type { IdempotencyKey, KeyClaim } from '../../idempotency/keys.js';
import type { eventRow } from '../../events/outbox.js';
import type { journalValues } from '../../ledger/ledger.js';
import type { PreparedStatements } from '../../storage/database.js';
import { runNamed, type NamedStatement } from '../../storage/named-statements.js';
import type { PaymentRow } from '../../storage/schema.js';
import type { Attempt } from '../types.js';
import type { OperationResult } from './context.js';

/**
 * The parts of Keel's single-statement phases (first-send.ts, capture.ts, refund.ts), statements with named
 * parameters (storage/named-statements.ts): the ledger's journal, an event and the finished key as CTEs any
 * such statement can end with, and the guard that makes a miss undo all of it.
 *
 * A statement's guarded writes hang off one CTE (the guard): each later part writes only `FROM` it, and the key's
 * part asserts it wrote, so a guard that missed (a state another request moved, a key another request took over)
 * raises `KEEL1` and the statement — every part of it — rolls back.
 */
/** A claimed key's parameters for a start function (`keel_capture_start`, `keel_refund_start`). */
export function claimParameters(claim: KeyClaim): Record<string, unknown> {
  return { merchant_id: claim.merchantId, key: claim.key, method: claim.method, path: claim.path, hash: claim.hash, lock_token: claim.lockToken, correlation_id: claim.correlationId };
}

/** The ledger's journal transaction and its entries, written only when `guard` wrote. */
export function journalPart(guard: string): string {
  return `journal AS (
  INSERT INTO ledger_transactions (id, merchant_id, kind, payment_id, refund_id, effective_date)
  SELECT :journal_id, :merchant_id, :journal_kind, :payment_id, :refund_id, :effective_date FROM ${guard}
  RETURNING id
), entries AS (
  INSERT INTO ledger_entries (transaction_id, merchant_id, account, currency, amount)
  SELECT journal.id, :merchant_id, posting.account, :currency, posting.amount FROM journal, unnest(:accounts::text[], :amounts::bigint[]) AS posting (account, amount)
)`;
}

export function journalParameters(journal: ReturnType<typeof journalValues>, kind: 'capture' | 'refund', effectiveDate: string): Record<string, unknown> {
  return { journal_id: journal.id, journal_kind: kind, effective_date: effectiveDate, accounts: journal.accounts, amounts: journal.amounts };
}

/** An event in the outbox, written only when `guard` wrote. */
export function eventPart(guard: string): string {
  return `event AS (
  INSERT INTO outbox (id, merchant_id, type, aggregate_id, data, correlation_id)
  SELECT :event_id, :merchant_id, :event_type, :event_aggregate_id, :event_data, :correlation_id FROM ${guard}
)`;
}

export function eventParameters(event: ReturnType<typeof eventRow>): Record<string, unknown> {
  return { event_id: event.id, event_type: event.type, event_aggregate_id: event.aggregate_id, event_data: event.data, correlation_id: event.correlation_id };
}

/**
 * The statement's end: the key finished with the response, fenced by its lock token, asserted. With
 * `answerIsEvent`, the stored response is the event's object (an approval answers with the object its event
 * carries), so the statement sends that JSON once, not twice.
 */
export function finishKeyPart(guard: string, options: { readonly answerIsEvent?: boolean } = {}): string {
  const body = options.answerIsEvent === true ? `(:event_data::jsonb) -> 'object'` : ':response_body';
  return `key AS (
  UPDATE idempotency_keys SET recovery_point = 'finished', response_status = :response_status, response_body = ${body}, response_sealed = NULL,
    locked_at = NULL, lock_token = NULL, updated_at = now()
  WHERE id = :key_id AND lock_token = :lock_token AND EXISTS (SELECT 1 FROM ${guard})
  RETURNING id
)
SELECT keel_assert(EXISTS (SELECT 1 FROM key), 'the guarded phase found the state it expected') AS ok`;
}

/** Runs a statement that ends with `finishKeyPart`; the key is finished and `result` its stored answer. */
export async function runFinishing(statements: PreparedStatements, statement: NamedStatement, key: IdempotencyKey, parameters: Readonly<Record<string, unknown>>, result: OperationResult): Promise<OperationResult> {
  const json = result.json ?? JSON.stringify(result.body);
  await runNamed(statements, statement, { ...parameters, response_status: result.status, response_body: json, key_id: key.id, lock_token: key.lockToken });
  key.recoveryPoint = 'finished';
  return { ...result, json };
}

/** An answer of 200 with `object`, serialized once: the stored response, the reply and the event's object share it. */
export function serializedOk<T extends Record<string, unknown>>(object: T): OperationResult & { readonly body: T; readonly json: string } {
  return { status: 200, body: object, final: true, json: JSON.stringify(object) };
}

/** What a start function (`keel_capture_start`, `keel_refund_start`, migration 0027) answers. */
export interface StartedRow {
  readonly key_id: string;
  readonly payment: PaymentRow;
  readonly amount: string;
  readonly last_sent_at: string;
  /** A capture's: the payment's stored partner token. */
  readonly token?: string | null;
}

/** Runs a start function's statement: its answer, or `undefined` when the key exists or a guard missed. */
export function runStart(statements: PreparedStatements, statement: NamedStatement, parameters: Readonly<Record<string, unknown>>): Promise<StartedRow | undefined> {
  return unlessGuardMissed(runNamed<{ started: StartedRow | null }>(statements, statement, parameters).then((rows) => rows[0]?.started ?? undefined));
}

/** `work`'s answer, or `undefined` when its statement's guard missed (and so wrote nothing). */
export async function unlessGuardMissed<T>(work: Promise<T>): Promise<T | undefined> {
  try {
    return await work;
  } catch (error) {
    if (isGuardMiss(error)) return undefined;
    throw error;
  }
}

/** The `pending` attempt a start function wrote, as its answer and the ids the caller chose describe it. */
export function startedAttempt(started: StartedRow, fields: Pick<Attempt, 'id' | 'merchantId' | 'paymentId' | 'refundId' | 'gateway' | 'operation' | 'partnerIdempotencyKey' | 'partnerPaymentId' | 'reason' | 'createdAt'>): Attempt {
  return { ...fields, status: 'pending', amount: BigInt(started.amount), partnerTokenEncrypted: null, inquiryCount: 0, sourceFingerprint: null, lastSentAt: new Date(started.last_sent_at) };
}

/** `keel_assert`'s error, or a start function's: the statement's guard missed and nothing it did was kept. */
export function isGuardMiss(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 'KEEL1';
}
