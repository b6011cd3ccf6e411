import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { sql, type Kysely, type Updateable } from 'kysely';
import { KeelError } from '../errors.js';
import { currentContext } from '../observability/context.js';
import type { FieldCipher } from '../storage/encryption.js';
import type { IdempotencyKeyRow, IdempotencyKeysTable, KeelDatabase } from '../storage/schema.js';

/**
 * Idempotency keys with atomic phases. A key is inserted and locked (`started`); each phase of the operation
 * commits its work together with the key's new `recovery_point`; the last phase stores the response
 * (`finished`). A key whose holder died is resumed from its recovery point by a retry (after the lock timeout)
 * or by the completer. Every write after the first is fenced by `lock_token`, so a holder that lost its lock
 * (it ran past the timeout and someone resumed) cannot write over the new holder.
 */

export type RecoveryPoint = 'started' | 'payment_created' | 'refund_created' | 'attempt_created' | 'finished';

export interface IdempotencyKey {
  readonly id: string;
  readonly merchantId: string;
  readonly key: string;
  readonly lockToken: string;
  recoveryPoint: RecoveryPoint;
  paymentId: string | null;
  refundId: string | null;
  attemptId: string | null;
}

export type BeginResult =
  | { readonly kind: 'run'; readonly key: IdempotencyKey }
  | { readonly kind: 'replay'; readonly status: number; readonly body: unknown }
  | { readonly kind: 'in_use' }
  | { readonly kind: 'reused' };

export interface BeginRequest {
  readonly merchantId: string;
  readonly key: string;
  readonly method: string;
  readonly path: string;
  readonly body: unknown;
  readonly lockTimeoutMs: number;
  /** Keys the request digest and opens a sealed stored response. */
  readonly cipher: FieldCipher;
}

type Db = Kysely<KeelDatabase>;

const keyPattern = /^[\x21-\x7e]{1,255}$/;

export function assertValidKey(header: unknown): string {
  if (header === undefined || header === '') {
    throw new KeelError('idempotency_key_missing', 'An Idempotency-Key header is required on every POST under /v1.', { param: 'Idempotency-Key' });
  }
  if (typeof header !== 'string' || !keyPattern.test(header)) {
    throw new KeelError('idempotency_key_invalid', 'The Idempotency-Key must be 1-255 printable ASCII characters without spaces.', {
      param: 'Idempotency-Key',
    });
  }
  return header;
}

/**
 * A keyed digest of a request: key order does not matter, values do. A card's number and CVC are not part of
 * what is digested; their keyed fingerprint stands in for them, so a retry with another card is still a
 * different request, and nothing stored with the key is derived from a card number without a key.
 */
export function requestHash(cipher: FieldCipher, method: string, path: string, body: unknown): string {
  return cipher.digest(`${method}\u0000${path}\u0000${canonicalJson(body, cipher)}`);
}

function canonicalJson(value: unknown, cipher: FieldCipher): string {
  if (Array.isArray(value)) return `[${value.map((inner) => canonicalJson(inner, cipher)).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(withoutCardSecrets(value as Record<string, unknown>, cipher)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, inner]) => `${JSON.stringify(key)}:${canonicalJson(inner, cipher)}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

/** `{ number, cvc, … }` of a card becomes `{ fingerprint, … }`. */
function withoutCardSecrets(value: Record<string, unknown>, cipher: FieldCipher): Record<string, unknown> {
  if (typeof value['number'] !== 'string' || !('exp_month' in value)) return value;
  const { number, cvc, ...rest } = value;
  return { ...rest, fingerprint: cipher.fingerprint(`card:${String(number)}:${String(cvc)}`) };
}

function toKey(row: IdempotencyKeyRow, lockToken: string): IdempotencyKey {
  return {
    id: row.id,
    merchantId: row.merchant_id,
    key: row.key,
    lockToken,
    recoveryPoint: row.recovery_point as RecoveryPoint,
    paymentId: row.payment_id,
    refundId: row.refund_id,
    attemptId: row.attempt_id,
  };
}

/**
 * A key not yet in the table, for an operation that inserts it in its own first statement, already at that
 * phase's recovery point (payments/operations/first-send.ts). A key that exists makes that statement insert
 * nothing, and the request then goes through `beginKey`.
 */
export interface KeyClaim {
  readonly merchantId: string;
  readonly key: string;
  readonly method: string;
  readonly path: string;
  readonly hash: string;
  readonly lockToken: string;
  readonly correlationId: string | null;
}

export function claimKey(request: Omit<BeginRequest, 'lockTimeoutMs'>): KeyClaim {
  return {
    merchantId: request.merchantId,
    key: request.key,
    method: request.method,
    path: request.path,
    hash: requestHash(request.cipher, request.method, request.path, request.body),
    lockToken: randomUUID(),
    correlationId: currentContext()?.correlationId ?? null,
  };
}

/** The columns a claimed key is inserted with, in the order of `claimedKeyValues`. */
export const claimedKeyColumns = 'merchant_id, key, request_method, request_path, request_hash, recovery_point, locked_at, lock_token, payment_id, attempt_id, correlation_id';

/** Values for `claimedKeyColumns` but `locked_at` (the statement's `now()`), locked by the claim. */
export function claimedKeyValues(claim: KeyClaim, point: RecoveryPoint, references: { paymentId: string; attemptId: string }): unknown[] {
  return [claim.merchantId, claim.key, claim.method, claim.path, claim.hash, point, claim.lockToken, references.paymentId, references.attemptId, claim.correlationId];
}

/** The key a claim became once its statement inserted it as row `id`. */
export function claimedKey(claim: KeyClaim, id: string, point: RecoveryPoint, references: { paymentId: string; attemptId: string; refundId?: string }): IdempotencyKey {
  return { id, merchantId: claim.merchantId, key: claim.key, lockToken: claim.lockToken, recoveryPoint: point, paymentId: references.paymentId, refundId: references.refundId ?? null, attemptId: references.attemptId };
}

/** `hash`: the request's digest when a claim already computed it. */
export async function beginKey(db: Db, request: BeginRequest & { readonly hash?: string }): Promise<BeginResult> {
  const hash = request.hash ?? requestHash(request.cipher, request.method, request.path, request.body);
  const lockToken = randomUUID();
  const inserted = await db
    .insertInto('idempotency_keys')
    .values({
      merchant_id: request.merchantId,
      key: request.key,
      request_method: request.method,
      request_path: request.path,
      request_hash: hash,
      recovery_point: 'started',
      locked_at: sql<Date>`now()`,
      lock_token: lockToken,
      correlation_id: currentContext()?.correlationId ?? null,
    })
    .onConflict((conflict) => conflict.columns(['merchant_id', 'key']).doNothing())
    .returningAll()
    .executeTakeFirst();
  if (inserted !== undefined) return { kind: 'run', key: toKey(inserted, lockToken) };

  const existing = await db
    .selectFrom('idempotency_keys')
    .selectAll()
    .where('merchant_id', '=', request.merchantId)
    .where('key', '=', request.key)
    .executeTakeFirst();
  // Deleted between our insert and select (a validation failure of the first request): start afresh.
  if (existing === undefined) return beginKey(db, request);
  if (existing.request_method !== request.method || existing.request_path !== request.path || existing.request_hash !== hash) {
    return { kind: 'reused' };
  }
  if (existing.recovery_point === 'finished') return replayOf(existing, request.cipher);

  const taken = await db
    .updateTable('idempotency_keys')
    .set({ locked_at: sql<Date>`now()`, lock_token: lockToken, updated_at: sql<Date>`now()` })
    .where('id', '=', existing.id)
    .where('recovery_point', '<>', 'finished')
    .where((eb) =>
      eb.or([eb('locked_at', 'is', null), eb('locked_at', '<', sql<Date>`now() - make_interval(secs => ${request.lockTimeoutMs / 1000})`)]),
    )
    .returningAll()
    .executeTakeFirst();
  if (taken !== undefined) return { kind: 'run', key: toKey(taken, lockToken) };
  const again = await db.selectFrom('idempotency_keys').selectAll().where('id', '=', existing.id).executeTakeFirst();
  return again?.recovery_point === 'finished' ? replayOf(again, request.cipher) : { kind: 'in_use' };
}

function replayOf(row: IdempotencyKeyRow, cipher: FieldCipher): BeginResult {
  assert.ok(row.response_status !== null, 'a finished key has a stored response');
  const body = row.response_sealed === null ? row.response_body : (JSON.parse(cipher.decrypt(row.response_sealed)) as unknown);
  return { kind: 'replay', status: row.response_status, body };
}

/** Lock lost: another holder resumed this key. The caller's transaction must roll back. */
export class IdempotencyLockLost extends Error {
  constructor() {
    super('idempotency key lock was taken over by another request');
    this.name = 'IdempotencyLockLost';
  }
}

export async function advanceKey(
  db: Db,
  key: IdempotencyKey,
  point: RecoveryPoint,
  references: { paymentId?: string; refundId?: string; attemptId?: string | null } = {},
): Promise<void> {
  await fencedUpdate(db, key, {
    recovery_point: point,
    ...(references.paymentId === undefined ? {} : { payment_id: references.paymentId }),
    ...(references.refundId === undefined ? {} : { refund_id: references.refundId }),
    ...(references.attemptId === undefined ? {} : { attempt_id: references.attemptId }),
  });
  key.recoveryPoint = point;
  if (references.paymentId !== undefined) key.paymentId = references.paymentId;
  if (references.refundId !== undefined) key.refundId = references.refundId;
  if (references.attemptId !== undefined) key.attemptId = references.attemptId;
}

/** Stores the final answer; `sealWith` encrypts it, for an answer that holds a secret. */
export async function finishKey(db: Db, key: IdempotencyKey, status: number, body: unknown, sealWith?: FieldCipher): Promise<void> {
  const json = JSON.stringify(body);
  const stored = sealWith === undefined ? { response_body: json, response_sealed: null } : { response_body: null, response_sealed: sealWith.encrypt(json) };
  await fencedUpdate(db, key, { recovery_point: 'finished', response_status: status, ...stored, locked_at: null, lock_token: null });
  key.recoveryPoint = 'finished';
}

/** An update only the key's current holder may make; anyone else's transaction must roll back. */
async function fencedUpdate(db: Db, key: IdempotencyKey, changes: Updateable<IdempotencyKeysTable>): Promise<void> {
  const row = await db
    .updateTable('idempotency_keys')
    .set({ ...changes, updated_at: sql<Date>`now()` })
    .where('id', '=', key.id)
    .where('lock_token', '=', key.lockToken)
    .returning('id')
    .executeTakeFirst();
  if (row === undefined) throw new IdempotencyLockLost();
}

/** Unlocks a key whose request ended without a final answer, so a retry may resume at once. */
export async function releaseKey(db: Db, key: IdempotencyKey): Promise<void> {
  await db
    .updateTable('idempotency_keys')
    .set({ locked_at: null, lock_token: null, updated_at: sql<Date>`now()` })
    .where('id', '=', key.id)
    .where('lock_token', '=', key.lockToken)
    .execute();
}

/** Forgets a key whose request failed before any side effect: a retry runs as if it were the first. */
export async function discardKey(db: Db, key: IdempotencyKey): Promise<void> {
  await db
    .deleteFrom('idempotency_keys')
    .where('id', '=', key.id)
    .where('lock_token', '=', key.lockToken)
    .where('recovery_point', '=', 'started')
    .execute();
}

/** Keys abandoned mid-flight longer than `abandonedAfterMs`, claimed for the completer. */
export async function claimAbandonedKeys(db: Db, abandonedAfterMs: number, batchSizeMax: number): Promise<IdempotencyKey[]> {
  const lockToken = randomUUID();
  const result = await sql<IdempotencyKeyRow>`
    UPDATE idempotency_keys SET locked_at = now(), lock_token = ${lockToken}, updated_at = now()
    WHERE id IN (
      SELECT id FROM idempotency_keys
      WHERE recovery_point <> 'finished'
        AND coalesce(locked_at, updated_at) < now() - make_interval(secs => ${abandonedAfterMs / 1000})
      ORDER BY id LIMIT ${batchSizeMax}
      FOR UPDATE SKIP LOCKED
    ) RETURNING *`.execute(db);
  return result.rows.map((row) => toKey(row, lockToken));
}
