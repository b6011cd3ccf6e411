import type { FastifyReply, FastifyRequest } from 'fastify';
import { KeelError, isKeelError } from '../errors.js';
import { InjectedCrash, type OperationContext, type OperationResult, type PaymentsDeps } from '../payments/operations/context.js';
import type { MerchantContext } from '../payments/types.js';
import { isTransientDatabaseError } from '../storage/database.js';
import { sendError } from './app.js';
import {
  IdempotencyLockLost,
  assertValidKey,
  beginKey,
  discardKey,
  finishKey,
  releaseKey,
  type IdempotencyKey,
} from '../idempotency/keys.js';

/**
 * Runs a mutating request under its `Idempotency-Key`: replays a finished key, refuses a key in use or reused
 * with another request, and otherwise runs the operation, whose phases advance the key. What happens to the
 * key when the operation ends is decided here, in one place:
 * - a final answer is stored (operations store it in their last transaction; this stores the rest);
 * - a non-final answer (nothing reached the partner) unlocks the key so the same key may try again;
 * - an error before any side effect forgets the key (a validation failure stores nothing);
 * - an error after a side effect unlocks the key so a retry resumes from its recovery point.
 */
export interface IdempotentRun {
  readonly request: FastifyRequest;
  readonly reply: FastifyReply;
  readonly deps: PaymentsDeps;
  readonly merchant: MerchantContext;
  readonly lockTimeoutMs: number;
  readonly operation: (context: OperationContext) => Promise<OperationResult>;
}

export async function runIdempotent(run: IdempotentRun): Promise<FastifyReply> {
  const { request, reply, deps, merchant } = run;
  const keyHeader = assertValidKey(request.headers['idempotency-key']);
  const begun = await beginKey(deps.db, {
    merchantId: merchant.id,
    key: keyHeader,
    method: request.method,
    path: request.url.split('?')[0] ?? request.url,
    body: request.body ?? null,
    lockTimeoutMs: run.lockTimeoutMs,
  });
  switch (begun.kind) {
    case 'replay':
      return reply.status(begun.status).header('idempotent-replayed', 'true').send(begun.body);
    case 'in_use':
      return sendError(request, reply, new KeelError('idempotency_key_in_use', 'A request with this Idempotency-Key is still running; retry after it finishes.', { retryAfterSeconds: 1 }));
    case 'reused':
      return sendError(request, reply, new KeelError('idempotency_key_reused', 'This Idempotency-Key was used with a different request (method, path or body).'));
    case 'run':
      return execute(run, begun.key);
  }
}

/** The common case: a route's request for its authenticated merchant, under the configured lock timeout. */
export function idempotent(
  services: { readonly deps: PaymentsDeps; readonly config: { readonly idempotencyLockTimeoutMs: number } },
  request: FastifyRequest,
  reply: FastifyReply,
  operation: (context: OperationContext) => Promise<OperationResult>,
): Promise<FastifyReply> {
  return runIdempotent({ request, reply, deps: services.deps, merchant: request.merchant, lockTimeoutMs: services.config.idempotencyLockTimeoutMs, operation });
}

async function execute(run: IdempotentRun, key: IdempotencyKey): Promise<FastifyReply> {
  const { request, reply, deps, merchant } = run;
  let result: OperationResult;
  try {
    result = await run.operation({ deps, merchant, key });
    if (result.final && key.recoveryPoint !== 'finished') await finishKey(deps.db, key, result.status, result.body);
    if (!result.final) await releaseKey(deps.db, key);
  } catch (error) {
    if (error instanceof InjectedCrash) {
      // A simulated process death: the key stays locked, as a dead process would leave it.
      request.log.warn({ fault: error.message }, 'injected crash');
      return sendError(request, reply, new KeelError('internal_error', 'The request was interrupted.'));
    }
    await settleKeyAfterError(deps, key).catch(() => undefined);
    if (error instanceof IdempotencyLockLost) {
      return sendError(request, reply, new KeelError('idempotency_key_in_use', 'Another request resumed this Idempotency-Key.'));
    }
    if (isKeelError(error)) return sendError(request, reply, error);
    if (isTransientDatabaseError(error)) {
      request.log.warn({ err_code: (error as { code?: string }).code }, 'database unavailable during an operation');
      return sendError(request, reply, new KeelError('service_unavailable', 'Keel\'s database is unavailable; retry with the same idempotency key.', { retryAfterSeconds: 1 }));
    }
    throw error;
  }
  for (const [name, value] of Object.entries(result.headers ?? {})) void reply.header(name, value);
  return reply.status(result.status).send(result.body);
}

async function settleKeyAfterError(deps: PaymentsDeps, key: IdempotencyKey): Promise<void> {
  if (key.recoveryPoint === 'started') await discardKey(deps.db, key);
  else await releaseKey(deps.db, key);
}
