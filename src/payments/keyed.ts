import type { FastifyReply, FastifyRequest } from 'fastify';
import { KeelError, isKeelError } from '../errors.js';
import { IdempotencyLockLost, assertValidKey, beginKey, claimKey, discardKey, finishKey, releaseKey, type IdempotencyKey, type KeyClaim } from '../idempotency/keys.js';
import { InjectedCrash, type OperationContext, type OperationResult, type PaymentsDeps } from './operations/context.js';
import type { MerchantContext } from '../merchants/types.js';
import { isTransientDatabaseError } from '../storage/database.js';
import { sendError } from '../http/app.js';

/**
 * Runs a mutating request under an idempotency key: replays a finished key, refuses a key in use or reused
 * with another request, and otherwise runs the operation, whose phases advance the key. What happens to the
 * key when the operation ends is decided here, in one place:
 * - a final answer is stored (operations store it in their last transaction; this stores the rest);
 * - a non-final answer (nothing reached the partner) unlocks the key so the same key may try again;
 * - an error before any side effect forgets the key (a validation failure stores nothing);
 * - an error after a side effect unlocks the key so a retry resumes from its recovery point.
 */
export interface KeyedRequest {
  readonly key: string;
  readonly method: string;
  readonly path: string;
  readonly body: unknown;
}

export type KeyedOutcome =
  | { readonly kind: 'answered'; readonly result: OperationResult; readonly replayed: boolean }
  | { readonly kind: 'in_use' }
  | { readonly kind: 'reused' };

/**
 * An operation that can insert the key in its own first statement (operations/first-send.ts): it runs its
 * checks, then that statement; it answers the key it inserted and what remains to do, or `undefined` when the
 * key exists. A check that fails, or a key that exists, sends the request the general way, which answers a
 * finished key before any check.
 */
export type FreshStart = (claim: KeyClaim) => Promise<{ readonly key: IdempotencyKey; readonly rest: (context: OperationContext) => Promise<OperationResult> } | undefined>;

export async function runUnderKey(
  deps: PaymentsDeps,
  merchant: MerchantContext,
  request: KeyedRequest,
  lockTimeoutMs: number,
  operation: (context: OperationContext) => Promise<OperationResult>,
  fresh?: FreshStart,
): Promise<KeyedOutcome> {
  const claim = fresh === undefined ? undefined : claimKey({ merchantId: merchant.id, ...request, cipher: deps.cipher });
  if (fresh !== undefined && claim !== undefined) {
    const started = await fresh(claim).catch((error: unknown) => {
      // `order_id_taken` comes from the first statement, which wrote nothing and proved the key new.
      if (isKeelError(error) && error.code !== 'order_id_taken') return undefined;
      throw error;
    });
    if (started !== undefined) return { kind: 'answered', result: await execute(deps, merchant, started.key, started.rest), replayed: false };
  }
  // The digest a claim computed is the same request's.
  const begun = await beginKey(deps.db, { merchantId: merchant.id, ...request, lockTimeoutMs, cipher: deps.cipher, ...(claim === undefined ? {} : { hash: claim.hash }) });
  switch (begun.kind) {
    case 'replay':
      return { kind: 'answered', result: { status: begun.status, body: begun.body, final: true }, replayed: true };
    case 'in_use':
    case 'reused':
      return begun;
    case 'run':
      return { kind: 'answered', result: await execute(deps, merchant, begun.key, operation), replayed: false };
  }
}

async function execute(deps: PaymentsDeps, merchant: MerchantContext, key: IdempotencyKey, operation: (context: OperationContext) => Promise<OperationResult>): Promise<OperationResult> {
  try {
    const result = await operation({ deps, merchant, key });
    if (result.final && key.recoveryPoint !== 'finished') await finishKey(deps.db, key, result.status, result.body, result.sensitive === true ? deps.cipher : undefined);
    if (!result.final) await releaseKey(deps.db, key);
    return result;
  } catch (error) {
    // A simulated process death: the key stays locked, as a dead process would leave it.
    if (error instanceof InjectedCrash) throw error;
    await (key.recoveryPoint === 'started' ? discardKey(deps.db, key) : releaseKey(deps.db, key)).catch(() => undefined);
    if (error instanceof IdempotencyLockLost) throw new KeelError('idempotency_key_in_use', 'Another request resumed this Idempotency-Key.');
    if (isKeelError(error)) throw error;
    if (isTransientDatabaseError(error)) {
      deps.logger.warn({ err_code: (error as { code?: string }).code }, 'database unavailable during an operation');
      throw new KeelError('service_unavailable', 'Keel\'s database is unavailable; retry with the same idempotency key.', { retryAfterSeconds: 1 });
    }
    throw error;
  }
}

/** A route's request under its `Idempotency-Key` header, for its authenticated merchant. */
export async function idempotent(
  services: { readonly deps: PaymentsDeps; readonly config: { readonly idempotencyLockTimeoutMs: number } },
  request: FastifyRequest,
  reply: FastifyReply,
  operation: (context: OperationContext) => Promise<OperationResult>,
  fresh?: FreshStart,
): Promise<FastifyReply> {
  const key = assertValidKey(request.headers['idempotency-key']);
  const keyed = { key, method: request.method, path: request.url.split('?')[0] ?? request.url, body: request.body ?? null };
  let outcome: KeyedOutcome;
  try {
    outcome = await runUnderKey(services.deps, request.merchant, keyed, services.config.idempotencyLockTimeoutMs, operation, fresh);
  } catch (error) {
    if (!(error instanceof InjectedCrash)) throw error;
    request.log.warn({ fault: error.message }, 'injected crash');
    return sendError(request, reply, new KeelError('internal_error', 'The request was interrupted.'));
  }
  switch (outcome.kind) {
    case 'in_use':
      return sendError(request, reply, new KeelError('idempotency_key_in_use', 'A request with this Idempotency-Key is still running; retry after it finishes.', { retryAfterSeconds: 1 }));
    case 'reused':
      return sendError(request, reply, new KeelError('idempotency_key_reused', 'This Idempotency-Key was used with a different request (method, path or body).'));
    case 'answered': {
      if (outcome.replayed) void reply.header('idempotent-replayed', 'true');
      for (const [name, value] of Object.entries(outcome.result.headers ?? {})) void reply.header(name, value);
      if (outcome.result.json !== undefined) return reply.status(outcome.result.status).type('application/json; charset=utf-8').send(outcome.result.json);
      return reply.status(outcome.result.status).send(outcome.result.body);
    }
  }
}
