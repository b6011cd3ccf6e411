import type { Kysely } from 'kysely';
import { KeelError } from '../errors.js';
import { appendEvent } from '../events/outbox.js';
import type { CardDetails, GatewayName, PaymentSource } from '../gateways/connector.js';
import { cardBrand, cardLast4 } from '../gateways/connector.js';
import type { GatewayRegistry } from '../gateways/registry.js';
import { primaryGateway } from '../merchants/merchants.js';
import { partnerContext, type StoredMethods } from '../payments/operations/context.js';
import type { MerchantContext } from '../merchants/types.js';
import type { PaymentMethodSnapshot } from '../payments/types.js';
import { isUniqueViolation } from '../storage/database.js';
import type { FieldCipher } from '../storage/encryption.js';
import { newId, publicToUuid, uuidToPublic } from '../storage/ids.js';
import type { KeelDatabase, PaymentMethodRow } from '../storage/schema.js';
import { customerOr404, findCustomer, type Customer } from './customers.js';

/**
 * Stored payment methods. A card is exchanged for the partner's token at once (Toss billing key, Stripe payment
 * method); Keel keeps the encrypted token, brand, last4, expiry and an HMAC fingerprint, never the number or
 * CVC. The same card registered twice by one customer returns the method already stored. A bank account keeps
 * its bank code, last4 and the account number encrypted (AES-256-GCM).
 */
export interface PaymentMethodsDeps {
  readonly db: Kysely<KeelDatabase>;
  readonly gateways: GatewayRegistry;
  readonly cipher: FieldCipher;
}

export interface BankAccountInput {
  readonly bankCode: string;
  readonly accountNumber: string;
  readonly holderName: string;
}

/** A method to attach: a card already checked, or a bank account. */
export type MethodToAttach = { readonly type: 'card'; readonly card: CardDetails } | { readonly type: 'bank_account'; readonly bankAccount: BankAccountInput };

export function attachMethod(deps: PaymentMethodsDeps, merchant: MerchantContext, customer: Customer, method: MethodToAttach): Promise<{ method: PaymentMethodRow; created: boolean }> {
  return method.type === 'card' ? attachCard(deps, merchant, customer, method.card) : attachBankAccount(deps, customer, method.bankAccount);
}

/** What charging a stored card sends (its partner token, decrypted) and what the payment records of it. */
export function storedCardCharge(method: PaymentMethodRow, token: string, cipher: FieldCipher): { source: PaymentSource; snapshot: PaymentMethodSnapshot } {
  return {
    source: { token: cipher.decrypt(token), gateway: methodGateway(method) },
    snapshot: { type: 'card', card: { brand: method.brand ?? 'unknown', last4: method.last4, exp_month: method.exp_month ?? 0, exp_year: method.exp_year ?? 0 } },
  };
}

/** Brand Pay's side of `StoredMethods`: what payments may ask of stored methods and their customers. */
export function createStoredMethods(db: Kysely<KeelDatabase>, cipher: FieldCipher): StoredMethods {
  return {
    async chargeable(merchantId, methodPublicId, customerPublicId) {
      const methodId = publicToUuid('paymentMethod', methodPublicId);
      const method = methodId === undefined ? undefined : await findMethod(db, merchantId, methodId);
      if (method === undefined) throw new KeelError('resource_missing', `No such payment method: ${methodPublicId}.`, { param: 'payment_method' });
      const customerId = customerPublicId === undefined ? undefined : publicToUuid('customer', customerPublicId);
      if (customerId === undefined || method.customer_id !== customerId) {
        throw new KeelError('customer_inactive', 'A stored payment method is used with the customer it belongs to (customer).', { param: 'customer' });
      }
      const owner = await findCustomer(db, merchantId, customerId);
      if (owner?.status === 'locked') throw new KeelError('customer_locked', 'This customer is locked until the merchant unlocks them.');
      if (owner?.status !== 'active' || method.status !== 'active' || method.token_encrypted === null) {
        throw new KeelError('customer_inactive', 'The customer is deleted or the payment method is detached.', { param: 'payment_method' });
      }
      if (method.type !== 'card') throw new KeelError('payment_method_unsupported', 'Bank account payments are not supported by the merchant\'s partners yet.', { param: 'payment_method' });
      return { ...storedCardCharge(method, method.token_encrypted, cipher), customerId, paymentMethodId: method.id };
    },
    async customerId(merchantId, customerPublicId) {
      return (await customerOr404(db, merchantId, customerPublicId, { param: 'customer' })).id;
    },
    async source(merchantId, paymentMethodId) {
      const method = await findMethod(db, merchantId, paymentMethodId);
      if (method === undefined || method.type !== 'card' || method.token_encrypted === null) return undefined;
      return storedCardCharge(method, method.token_encrypted, cipher).source;
    },
  };
}

/** The partner that issued a stored card's token: the only one that can charge it. */
function methodGateway(method: PaymentMethodRow): GatewayName {
  if (method.gateway !== 'toss' && method.gateway !== 'stripe') throw new Error(`payment method ${method.id} has no partner`);
  return method.gateway;
}

export function paymentMethodToApi(row: PaymentMethodRow): Record<string, unknown> {
  return {
    id: uuidToPublic('paymentMethod', row.id),
    object: 'payment_method',
    type: row.type,
    customer: uuidToPublic('customer', row.customer_id),
    ...(row.type === 'card'
      ? { card: { brand: row.brand, last4: row.last4, exp_month: row.exp_month, exp_year: row.exp_year } }
      : { bank_account: { bank_code: row.bank_code, last4: row.last4 } }),
    fingerprint: row.fingerprint,
    status: row.status,
    created_at: new Date(row.created_at).toISOString(),
  };
}

async function activeByFingerprint(db: Kysely<KeelDatabase>, customer: Customer, fingerprint: string): Promise<PaymentMethodRow | undefined> {
  return db
    .selectFrom('payment_methods')
    .selectAll()
    .where('merchant_id', '=', customer.merchantId)
    .where('customer_id', '=', customer.id)
    .where('fingerprint', '=', fingerprint)
    .where('status', '=', 'active')
    .executeTakeFirst();
}

/** Returns the stored method and whether it is new. */
export async function attachCard(deps: PaymentMethodsDeps, merchant: MerchantContext, customer: Customer, card: CardDetails): Promise<{ method: PaymentMethodRow; created: boolean }> {
  const fingerprint = deps.cipher.fingerprint(`card:${card.number}`);
  const existing = await activeByFingerprint(deps.db, customer, fingerprint);
  if (existing !== undefined) return { method: existing, created: false };
  const gateway = primaryGateway(merchant);
  const { uuid, publicId } = newId('paymentMethod');
  const tokenized = await deps.gateways
    .connector(gateway)
    .tokenize(partnerContext(merchant, gateway, `keel_${publicId}`), { customerKey: uuidToPublic('customer', customer.id), card });
  if (tokenized.kind === 'declined') throw new KeelError(tokenized.code, tokenized.message);
  if (tokenized.kind !== 'ok') {
    throw new KeelError('gateway_unavailable', 'The payment partner could not register the card; nothing was stored. Retry.', { retryAfterSeconds: 1 });
  }
  return insertMethod(deps, customer, {
    id: uuid,
    type: 'card',
    gateway,
    token_encrypted: deps.cipher.encrypt(tokenized.value.token),
    brand: cardBrand(card.number),
    last4: cardLast4(card.number),
    exp_month: card.expMonth,
    exp_year: card.expYear,
    fingerprint,
  });
}

export async function attachBankAccount(deps: PaymentMethodsDeps, customer: Customer, account: BankAccountInput): Promise<{ method: PaymentMethodRow; created: boolean }> {
  const fingerprint = deps.cipher.fingerprint(`bank:${account.bankCode}:${account.accountNumber}`);
  const existing = await activeByFingerprint(deps.db, customer, fingerprint);
  if (existing !== undefined) return { method: existing, created: false };
  return insertMethod(deps, customer, {
    id: newId('paymentMethod').uuid,
    type: 'bank_account',
    bank_code: account.bankCode,
    last4: account.accountNumber.slice(-4),
    account_number_encrypted: deps.cipher.encrypt(account.accountNumber),
    fingerprint,
  });
}

type NewMethod = Pick<PaymentMethodRow, 'id' | 'type' | 'last4' | 'fingerprint'> & Partial<Omit<PaymentMethodRow, 'id' | 'type' | 'last4' | 'fingerprint'>>;

async function insertMethod(deps: PaymentMethodsDeps, customer: Customer, values: NewMethod): Promise<{ method: PaymentMethodRow; created: boolean }> {
  try {
    const method = await deps.db.transaction().execute(async (trx) => {
      const row = await trx
        .insertInto('payment_methods')
        .values({ ...values, created_at: undefined, detached_at: null, merchant_id: customer.merchantId, customer_id: customer.id, status: 'active' })
        .returningAll()
        .executeTakeFirstOrThrow();
      await appendEvent(trx, { merchantId: customer.merchantId, type: 'brandpay.payment_method.attached', aggregateId: row.id, object: paymentMethodToApi(row) });
      return row;
    });
    return { method, created: true };
  } catch (error) {
    // The same method registered concurrently: the other request stored it first.
    if (!isUniqueViolation(error)) throw error;
    const existing = await activeByFingerprint(deps.db, customer, values.fingerprint);
    if (existing === undefined) throw error;
    return { method: existing, created: false };
  }
}

export async function listMethods(db: Kysely<KeelDatabase>, customer: Customer): Promise<PaymentMethodRow[]> {
  return db
    .selectFrom('payment_methods')
    .selectAll()
    .where('merchant_id', '=', customer.merchantId)
    .where('customer_id', '=', customer.id)
    .where('status', '=', 'active')
    .orderBy('id', 'desc')
    .execute();
}

export async function findMethod(db: Kysely<KeelDatabase>, merchantId: string, methodId: string): Promise<PaymentMethodRow | undefined> {
  return db.selectFrom('payment_methods').selectAll().where('merchant_id', '=', merchantId).where('id', '=', methodId).executeTakeFirst();
}

/** Revokes the token at the partner, then marks the method detached; a partner that cannot be reached leaves it attached. */
export async function detachMethod(deps: PaymentMethodsDeps, merchant: MerchantContext, method: PaymentMethodRow): Promise<PaymentMethodRow> {
  if (method.status === 'detached') return method;
  if (method.token_encrypted !== null && method.gateway !== null) {
    const gateway = method.gateway as GatewayName;
    const revoked = await deps.gateways
      .connector(gateway)
      .detach(partnerContext(merchant, gateway, `keel_detach_${method.id}`), { token: deps.cipher.decrypt(method.token_encrypted) });
    if (revoked.kind !== 'ok') {
      throw new KeelError('gateway_unavailable', 'The payment partner could not revoke the stored card; it stays attached. Retry.', { retryAfterSeconds: 1 });
    }
  }
  return deps.db.transaction().execute(async (trx) => {
    const row = await trx
      .updateTable('payment_methods')
      .set({ status: 'detached', detached_at: new Date(), token_encrypted: null, account_number_encrypted: null })
      .where('id', '=', method.id)
      .where('merchant_id', '=', method.merchant_id)
      .returningAll()
      .executeTakeFirstOrThrow();
    await appendEvent(trx, { merchantId: row.merchant_id, type: 'brandpay.payment_method.detached', aggregateId: row.id, object: paymentMethodToApi(row) });
    return row;
  });
}
