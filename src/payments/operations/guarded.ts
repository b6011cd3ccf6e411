import type { IdempotencyKey, KeyClaim } from '../../idempotency/keys.js';
import type { eventRow } from '../../events/outbox.js';
import type { journalValues } from '../../ledger/ledger.js';
import type { PreparedStatements } from '../../storage/database.js';
import type { OperationResult } from './context.js';

/**
 * The parts of Keel's single-statement phases (first-send.ts, follow-up.ts): a statement with named parameters,
 * numbered once when its module loads and run as a named prepared statement; the ledger's journal, an event and
 * the finished key as CTEs any such statement can end with; and the guard that makes a miss undo all of it.
 *
 * A statement's guarded writes hang off one CTE (the guard): each later part writes only `FROM` it, and the key's
 * part asserts it wrote, so a guard that missed (a state another request moved, a key another request took over)
 * raises `KEEL1` and the statement — every part of it — rolls back.
 */
export interface NamedStatement {
  readonly name: string;
  readonly text: string;
  /** The parameter each `$n` stands for, in order. */
  readonly order: readonly string[];
}

/** `:name` placeholders (not `::type` casts) become `$1…$n`, one number per name. */
export function namedStatement(name: string, text: string): NamedStatement {
  const order: string[] = [];
  const numbered = text.replace(/(?<![:\w]):([a-z][a-z0-9_]*)/g, (_match, parameter: string) => {
    if (!order.includes(parameter)) order.push(parameter);
    return `$${order.indexOf(parameter) + 1}`;
  });
  return { name, text: numbered, order };
}

export function runNamed<R>(statements: PreparedStatements, statement: NamedStatement, parameters: Readonly<Record<string, unknown>>): Promise<R[]> {
  const values = statement.order.map((parameter) => {
    if (!(parameter in parameters)) throw new Error(`statement ${statement.name} needs :${parameter}`);
    return parameters[parameter];
  });
  return statements.run<R>(statement.name, statement.text, values);
}

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

/** The statement's end: the key finished with the response, fenced by its lock token, asserted. */
export function finishKeyPart(guard: string): string {
  return `key AS (
  UPDATE idempotency_keys SET recovery_point = 'finished', response_status = :response_status, response_body = :response_body, response_sealed = NULL,
    locked_at = NULL, lock_token = NULL, updated_at = now()
  WHERE id = :key_id AND lock_token = :lock_token AND EXISTS (SELECT 1 FROM ${guard})
  RETURNING id
)
SELECT keel_assert(EXISTS (SELECT 1 FROM key), 'the guarded phase found the state it expected') AS ok`;
}

/** Runs a statement that ends with `finishKeyPart`; the key is finished and `result` its stored answer. */
export async function runFinishing(statements: PreparedStatements, statement: NamedStatement, key: IdempotencyKey, parameters: Readonly<Record<string, unknown>>, result: OperationResult): Promise<OperationResult> {
  await runNamed(statements, statement, { ...parameters, response_status: result.status, response_body: JSON.stringify(result.body), key_id: key.id, lock_token: key.lockToken });
  key.recoveryPoint = 'finished';
  return result;
}

/** `keel_assert`'s error, or a start function's: the statement's guard missed and nothing it did was kept. */
export function isGuardMiss(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 'KEEL1';
}
