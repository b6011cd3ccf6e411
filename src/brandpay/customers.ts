import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import type { Kysely } from 'kysely';
import { KeelError } from '../errors.js';
import { appendEvent } from '../events/outbox.js';
import { isUniqueViolation } from '../storage/database.js';
import { newId, publicToUuid, uuidToPublic } from '../storage/ids.js';
import { paged, type Page } from '../http/lists.js';
import type { CustomerRow, KeelDatabase } from '../storage/schema.js';
import { customerKeyProblem, pinProblem } from './rules.js';

/**
 * Brand Pay customers: the shop's shoppers, keyed by the shop's own `customer_key`, each with a six-digit PIN
 * (scrypt with a per-customer salt, compared in constant time). Five wrong PINs in a row lock the customer until
 * the merchant unlocks them; a correct PIN resets the count. Every read and write names the merchant.
 */
const scryptAsync = promisify(scrypt) as (password: string, salt: Buffer, keylen: number) => Promise<Buffer>;
export const pinFailuresMax = 5;
const pinHashBytes = 32;

export interface Customer {
  readonly id: string;
  readonly merchantId: string;
  readonly customerKey: string;
  readonly status: 'active' | 'locked' | 'deleted';
  readonly hasPin: boolean;
  readonly pinFailures: number;
}

type Db = Kysely<KeelDatabase>;

function toCustomer(row: CustomerRow): Customer {
  return {
    id: row.id,
    merchantId: row.merchant_id,
    customerKey: row.status === 'deleted' ? row.customer_key.split('#deleted#')[0] ?? row.customer_key : row.customer_key,
    status: row.status,
    hasPin: row.pin_hash !== null,
    pinFailures: row.pin_failures,
  };
}

export function customerToApi(customer: Customer): Record<string, unknown> {
  return {
    id: uuidToPublic('customer', customer.id),
    object: 'customer',
    customer_key: customer.customerKey,
    status: customer.status,
    has_pin: customer.hasPin,
  };
}

/** A page of the merchant's customers, newest first; deleted ones are left out. */
export async function listCustomers(db: Db, merchantId: string, customerKey: string | undefined, page: Page): Promise<Customer[]> {
  let query = db.selectFrom('customers').selectAll().where('merchant_id', '=', merchantId).where('status', '!=', 'deleted');
  if (customerKey !== undefined) query = query.where('customer_key', '=', customerKey);
  return (await paged(query, page).execute()).map(toCustomer);
}

export async function findCustomer(db: Db, merchantId: string, customerId: string, options: { forUpdate?: boolean } = {}): Promise<Customer | undefined> {
  let query = db.selectFrom('customers').selectAll().where('merchant_id', '=', merchantId).where('id', '=', customerId);
  if (options.forUpdate === true) query = query.forUpdate();
  const row = await query.executeTakeFirst();
  return row === undefined ? undefined : toCustomer(row);
}

/** The merchant's customer by public id, or 404 naming `param` (a deleted customer counts as missing unless allowed). */
export async function customerOr404(db: Db, merchantId: string, publicId: string, options: { readonly param: string; readonly allowDeleted?: boolean }): Promise<Customer> {
  const uuid = publicToUuid('customer', publicId);
  const customer = uuid === undefined ? undefined : await findCustomer(db, merchantId, uuid);
  if (customer === undefined || (customer.status === 'deleted' && options.allowDeleted !== true)) {
    throw new KeelError('resource_missing', `No such customer: ${publicId}.`, { param: options.param });
  }
  return customer;
}

/** Creates the customer, or returns the merchant's existing one with that key (a shop may call it at every checkout). */
export async function createCustomer(db: Db, merchantId: string, customerKey: string): Promise<{ customer: Customer; created: boolean }> {
  const problem = customerKeyProblem(customerKey);
  if (problem !== undefined) throw new KeelError('parameter_invalid', `${problem}.`, { param: 'customer_key' });
  const existing = await db.selectFrom('customers').selectAll().where('merchant_id', '=', merchantId).where('customer_key', '=', customerKey).executeTakeFirst();
  if (existing !== undefined) return { customer: toCustomer(existing), created: false };
  try {
    const row = await db
      .insertInto('customers')
      .values({ id: newId('customer').uuid, merchant_id: merchantId, customer_key: customerKey, status: 'active' })
      .returningAll()
      .executeTakeFirstOrThrow();
    return { customer: toCustomer(row), created: true };
  } catch (error) {
    if (!isUniqueViolation(error)) throw error;
    return createCustomer(db, merchantId, customerKey);
  }
}

async function hashPin(pin: string, salt: Buffer): Promise<Buffer> {
  return scryptAsync(pin, salt, pinHashBytes);
}

/**
 * Checks a PIN with the customer's row locked, counting failures: the fifth wrong PIN in a row locks the
 * customer and writes `brandpay.customer.locked`. Throws `pin_incorrect` or `customer_locked`.
 */
export async function verifyPin(db: Db, merchantId: string, customerId: string, pin: string): Promise<void> {
  const outcome = await db.transaction().execute(async (trx) => {
    const row = await trx.selectFrom('customers').selectAll().where('merchant_id', '=', merchantId).where('id', '=', customerId).forUpdate().executeTakeFirst();
    if (row === undefined || row.status === 'deleted') throw new KeelError('resource_missing', 'No such customer.', { param: 'customer' });
    if (row.status === 'locked') return 'locked' as const;
    if (row.pin_hash === null || row.pin_salt === null) return 'no_pin' as const;
    const expected = Buffer.from(row.pin_hash, 'hex');
    // A malformed PIN is not hashed: it is compared against zeros and counts as a failure.
    const wellFormed = /^[0-9]{6}$/.test(pin);
    const actual = wellFormed ? await hashPin(pin, Buffer.from(row.pin_salt, 'hex')) : Buffer.alloc(expected.length);
    if (actual.length === expected.length && timingSafeEqual(actual, expected) && wellFormed) {
      if (row.pin_failures > 0) await trx.updateTable('customers').set({ pin_failures: 0, updated_at: new Date() }).where('id', '=', row.id).execute();
      return 'ok' as const;
    }
    const failures = row.pin_failures + 1;
    const locked = failures >= pinFailuresMax;
    const updated = await trx
      .updateTable('customers')
      .set({ pin_failures: failures, status: locked ? 'locked' : 'active', updated_at: new Date() })
      .where('id', '=', row.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    if (locked) await appendEvent(trx, { merchantId, type: 'brandpay.customer.locked', aggregateId: row.id, object: customerToApi(toCustomer(updated)) });
    return locked ? ('now_locked' as const) : (pinFailuresMax - failures);
  });
  if (outcome === 'ok') return;
  if (outcome === 'locked' || outcome === 'now_locked') {
    throw new KeelError('customer_locked', 'This customer entered 5 wrong PINs in a row and is locked until the merchant unlocks them.');
  }
  if (outcome === 'no_pin') throw new KeelError('pin_required', 'This customer has no PIN yet.');
  throw new KeelError('pin_incorrect', `The PIN is wrong; ${outcome} ${outcome === 1 ? 'try remains' : 'tries remain'} before the customer is locked.`);
}

/** Sets the first PIN, or changes it with the current one (a wrong current PIN counts as a failure). */
export async function setPin(db: Db, merchantId: string, customerId: string, pin: string, currentPin: string | undefined): Promise<Customer> {
  const problem = pinProblem(pin);
  if (problem !== undefined) throw new KeelError('parameter_invalid', `${problem}.`, { param: 'pin' });
  const customer = await findCustomer(db, merchantId, customerId);
  if (customer === undefined || customer.status === 'deleted') throw new KeelError('resource_missing', 'No such customer.', { param: 'id' });
  if (customer.status === 'locked') throw new KeelError('customer_locked', 'This customer is locked until the merchant unlocks them.');
  if (customer.hasPin) {
    if (currentPin === undefined) throw new KeelError('pin_required', 'Changing the PIN needs current_pin.', { param: 'current_pin' });
    await verifyPin(db, merchantId, customerId, currentPin);
  }
  const salt = randomBytes(16);
  const hash = await hashPin(pin, salt);
  const row = await db
    .updateTable('customers')
    .set({ pin_hash: hash.toString('hex'), pin_salt: salt.toString('hex'), pin_failures: 0, updated_at: new Date() })
    .where('merchant_id', '=', merchantId)
    .where('id', '=', customerId)
    .returningAll()
    .executeTakeFirstOrThrow();
  return toCustomer(row);
}

export async function unlockCustomer(db: Db, merchantId: string, customerId: string): Promise<Customer> {
  const row = await db
    .updateTable('customers')
    .set({ status: 'active', pin_failures: 0, updated_at: new Date() })
    .where('merchant_id', '=', merchantId)
    .where('id', '=', customerId)
    .where('status', '<>', 'deleted')
    .returningAll()
    .executeTakeFirst();
  if (row === undefined) throw new KeelError('resource_missing', 'No such customer.', { param: 'id' });
  return toCustomer(row);
}

/** Marks the customer deleted and frees their key; their methods are detached by the caller first. */
export async function markCustomerDeleted(db: Db, merchantId: string, customer: Customer): Promise<Customer> {
  const row = await db
    .updateTable('customers')
    .set({ status: 'deleted', customer_key: `${customer.customerKey}#deleted#${customer.id}`, pin_hash: null, pin_salt: null, updated_at: new Date() })
    .where('merchant_id', '=', merchantId)
    .where('id', '=', customer.id)
    .returningAll()
    .executeTakeFirstOrThrow();
  return toCustomer(row);
}
