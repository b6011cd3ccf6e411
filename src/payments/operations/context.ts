import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { KeelError, type ErrorCode } from '../../errors.js';
import type { GatewayName, PartnerCallContext, PaymentSource } from '../../gateways/connector.js';
import type { GatewayRegistry } from '../../gateways/registry.js';
import type { IdempotencyKey } from '../../idempotency/keys.js';
import { currentContext } from '../../observability/context.js';
import type { Metrics } from '../../observability/metrics.js';
import type { FieldCipher } from '../../storage/encryption.js';
import type { KeelDatabase } from '../../storage/schema.js';
import type { MerchantContext } from '../types.js';

/** What every payment operation needs, passed as one object. */
export interface PaymentsDeps {
  readonly db: Kysely<KeelDatabase>;
  readonly gateways: GatewayRegistry;
  readonly cipher: FieldCipher;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly faults: FaultPoints;
  /** Per partner, how long its inquiries may lag (see `KeelConfig.partnerConsistencyWindowMs`). */
  readonly consistencyWindowMs: Readonly<Record<GatewayName, number>>;
  /**
   * The partner token of a stored payment method, for sending an attempt again without the shopper (the janitor
   * and the completer). Brand Pay owns stored methods; the composition root passes this in.
   */
  readonly storedSource: (merchantId: string, paymentMethodId: string) => Promise<PaymentSource | undefined>;
}

export interface OperationContext {
  readonly deps: PaymentsDeps;
  readonly merchant: MerchantContext;
  /** Absent only for work without a client request (janitor). */
  readonly key: IdempotencyKey | null;
}

/**
 * An operation's answer. `final` answers are stored on the idempotency key and replayed; a non-final answer
 * (nothing reached the partner) leaves the key open so the same key may try again.
 */
export interface OperationResult {
  readonly status: number;
  readonly body: unknown;
  readonly final: boolean;
  readonly headers?: Readonly<Record<string, string>>;
}

export function ok(status: number, body: unknown): OperationResult {
  return { status, body, final: true };
}

export function errorEnvelope(error: KeelError): Record<string, unknown> {
  return {
    error: {
      type: error.type,
      code: error.code,
      message: error.message,
      ...(error.param === undefined ? {} : { param: error.param }),
      request_id: currentContext()?.requestId ?? null,
      ...(error.payment === undefined ? {} : { payment: error.payment }),
    },
  };
}

export function errorResult(code: ErrorCode, message: string, options: { payment?: unknown; final?: boolean; retryAfterSeconds?: number } = {}): OperationResult {
  const error = new KeelError(code, message, {
    ...(options.payment === undefined ? {} : { payment: options.payment }),
    ...(options.retryAfterSeconds === undefined ? {} : { retryAfterSeconds: options.retryAfterSeconds }),
  });
  return {
    status: error.status,
    body: errorEnvelope(error),
    final: options.final ?? true,
    ...(options.retryAfterSeconds === undefined ? {} : { headers: { 'retry-after': String(options.retryAfterSeconds) } }),
  };
}

export function partnerContext(merchant: MerchantContext, gateway: GatewayName, idempotencyKey: string): PartnerCallContext {
  const partner = merchant.partners.find((candidate) => candidate.gateway === gateway);
  if (partner === undefined) throw new Error(`merchant ${merchant.id} has no credentials for ${gateway}`);
  return {
    partnerSecretKey: partner.partnerSecretKey,
    country: merchant.country,
    idempotencyKey,
    correlationId: currentContext()?.correlationId ?? 'none',
  };
}

/**
 * Test hook: a simulated process death at a phase boundary. An armed point throws `InjectedCrash` once; the
 * request then ends as a dead process would leave it (key locked, nothing more written).
 */
export const faultPointNames = ['after_payment_created', 'after_attempt_created', 'after_partner_call'] as const;
export type FaultPointName = (typeof faultPointNames)[number];

export class InjectedCrash extends Error {
  constructor(point: FaultPointName) {
    super(`injected crash at ${point}`);
    this.name = 'InjectedCrash';
  }
}

export class FaultPoints {
  readonly #armed = new Set<FaultPointName>();

  arm(point: FaultPointName): void {
    this.#armed.add(point);
  }

  disarm(): void {
    this.#armed.clear();
  }

  check(point: FaultPointName): void {
    if (this.#armed.delete(point)) throw new InjectedCrash(point);
  }
}
