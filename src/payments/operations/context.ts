import type { Kysely } from 'kysely';
import type { Logger } from 'pino';
import { KeelError, type ErrorCode } from '../../errors.js';
import type { GatewayName, PartnerCallContext, PaymentSource } from '../../gateways/connector.js';
import type { GatewayRegistry } from '../../gateways/registry.js';
import type { IdempotencyKey } from '../../idempotency/keys.js';
import { currentContext } from '../../observability/context.js';
import { errorEnvelope } from '../../http/envelope.js';
import type { Metrics } from '../../observability/metrics.js';
import type { FieldCipher } from '../../storage/encryption.js';
import type { PreparedStatements } from '../../storage/database.js';
import type { KeelDatabase } from '../../storage/schema.js';
import type { MerchantContext } from '../../merchants/types.js';
import type { Attempt, Payment, PaymentMethodSnapshot } from '../types.js';

/** What every payment operation needs, passed as one object. */
export interface PaymentsDeps {
  readonly db: Kysely<KeelDatabase>;
  /** The hot path's statements, prepared once (operations/first-send.ts). */
  readonly statements: PreparedStatements;
  readonly gateways: GatewayRegistry;
  readonly cipher: FieldCipher;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly faults: FaultPoints;
  /** Per partner, how long its inquiries may lag (see `KeelConfig.partnerConsistencyWindowMs`). */
  readonly consistencyWindowMs: Readonly<Record<GatewayName, number>>;
  /** Brand Pay's stored payment methods, which Brand Pay owns; the composition root passes them in. */
  readonly storedMethods: StoredMethods;
  /** Where the janitor records an attempt it gave up on: reconciliation owns anomalies and passes this in. */
  readonly stuckAttempts: StuckAttempts;
}

export interface StuckAttempts {
  /** Records, in `trx`, that the partner gave no definite answer about `attempt` after `inquiries` questions. */
  record(trx: Kysely<KeelDatabase>, payment: Payment, attempt: Attempt, inquiries: number): Promise<void>;
}

/** What payments need of stored payment methods and their customers. */
export interface StoredMethods {
  /**
   * A stored card of the named customer, ready to charge; refused (with the contract's error) when the customer
   * is locked or deleted, the method detached, or the method not the customer's.
   */
  chargeable(merchantId: string, methodPublicId: string, customerPublicId: string | undefined): Promise<ChargeableMethod>;
  /** The customer's internal id; 404 `resource_missing` (param `customer`) when there is none. */
  customerId(merchantId: string, customerPublicId: string): Promise<string>;
  /** The partner token of a stored card, for sending an attempt again without the shopper (janitor, completer). */
  source(merchantId: string, paymentMethodId: string): Promise<PaymentSource | undefined>;
}

export interface ChargeableMethod {
  readonly source: PaymentSource;
  readonly snapshot: PaymentMethodSnapshot;
  readonly customerId: string;
  readonly paymentMethodId: string;
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
  /** The answer holds a secret (a webhook signing secret): it is stored encrypted under its key. */
  readonly sensitive?: boolean;
  /** `body` already serialized, as it was stored under the key: sent as it is, not serialized again. */
  readonly json?: string;
}

export function ok(status: number, body: unknown, options: { sensitive?: boolean } = {}): OperationResult {
  return { status, body, final: true, ...(options.sensitive === true ? { sensitive: true } : {}) };
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

export function notConfigured(gateway: GatewayName): KeelError {
  return new KeelError('gateway_not_configured', `This merchant has no ${gateway} secret key, so nothing can be sent to ${gateway}; add one with POST /admin/merchants/{id} or route to another partner.`);
}

export function partnerContext(merchant: MerchantContext, gateway: GatewayName, idempotencyKey: string): PartnerCallContext {
  const partner = merchant.partners.find((candidate) => candidate.gateway === gateway);
  if (partner === undefined) throw new Error(`merchant ${merchant.id} has no credentials for ${gateway}`);
  if (partner.partnerSecretKey === null) throw notConfigured(gateway);
  return {
    partnerSecretKey: partner.partnerSecretKey,
    livemode: merchant.livemode,
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
