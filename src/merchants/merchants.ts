import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import { gatewayNames, type GatewayName } from '../gateways/connector.js';
import type { MerchantContext } from '../payments/types.js';
import { sha256Hex, type FieldCipher } from '../storage/encryption.js';
import { newId, uuidToPublic } from '../storage/ids.js';
import type { KeelDatabase } from '../storage/schema.js';

/**
 * Merchants and their API keys. Keys are shown once at creation and stored as SHA-256 hashes; the partner
 * secret key Keel uses on the merchant's behalf is stored encrypted.
 */
export interface NewMerchant {
  readonly name: string;
  readonly brandName?: string | undefined;
  readonly country?: string | undefined;
  readonly gateway?: GatewayName | undefined;
  /** The merchant's own key at the partner; absent: a test key for the benchmark gateway is generated. */
  readonly partnerSecretKey?: string | undefined;
}

export interface CreatedMerchant {
  readonly id: string;
  readonly secret_key: string;
  readonly publishable_key: string;
}

function randomKey(prefix: string): string {
  return `${prefix}${randomBytes(24).toString('base64url')}`;
}

export function isGatewayName(value: unknown): value is GatewayName {
  return typeof value === 'string' && (gatewayNames as readonly string[]).includes(value);
}

export async function createMerchant(db: Kysely<KeelDatabase>, cipher: FieldCipher, input: NewMerchant): Promise<CreatedMerchant> {
  const { uuid } = newId('merchant');
  const gateway = input.gateway ?? 'toss';
  const partnerSecretKey = input.partnerSecretKey ?? (gateway === 'toss' ? randomKey('test_sk_') : randomKey('sk_test_'));
  const secretKey = randomKey('sk_test_');
  const publishableKey = randomKey('pk_test_');
  await db.transaction().execute(async (trx) => {
    await trx
      .insertInto('merchants')
      .values({
        id: uuid,
        name: input.name,
        brand_name: input.brandName ?? `${input.name} Pay`,
        country: (input.country ?? 'KR').toUpperCase(),
        gateway,
        partner_secret_key_encrypted: cipher.encrypt(partnerSecretKey),
        livemode: false,
      })
      .execute();
    await trx
      .insertInto('api_keys')
      .values([
        { id: newId('apiKey').uuid, merchant_id: uuid, kind: 'secret', key_hash: sha256Hex(secretKey), key_hint: secretKey.slice(-4) },
        { id: newId('apiKey').uuid, merchant_id: uuid, kind: 'publishable', key_hash: sha256Hex(publishableKey), key_hint: publishableKey.slice(-4) },
      ])
      .execute();
  });
  return { id: uuidToPublic('merchant', uuid), secret_key: secretKey, publishable_key: publishableKey };
}

export interface Authenticated {
  readonly merchant: MerchantContext;
  readonly keyKind: 'secret' | 'publishable';
}

export async function authenticateKey(db: Kysely<KeelDatabase>, cipher: FieldCipher, apiKey: string): Promise<Authenticated | undefined> {
  const row = await db
    .selectFrom('api_keys')
    .innerJoin('merchants', 'merchants.id', 'api_keys.merchant_id')
    .select([
      'api_keys.kind',
      'merchants.id',
      'merchants.country',
      'merchants.gateway',
      'merchants.livemode',
      'merchants.partner_secret_key_encrypted',
    ])
    .where('api_keys.key_hash', '=', sha256Hex(apiKey))
    .where('api_keys.revoked_at', 'is', null)
    .executeTakeFirst();
  if (row === undefined || !isGatewayName(row.gateway)) return undefined;
  return {
    keyKind: row.kind,
    merchant: {
      id: row.id,
      country: row.country,
      gateway: row.gateway,
      livemode: row.livemode,
      partnerSecretKey: cipher.decrypt(row.partner_secret_key_encrypted),
    },
  };
}

export async function loadMerchantContext(db: Kysely<KeelDatabase>, cipher: FieldCipher, merchantId: string): Promise<MerchantContext | undefined> {
  const row = await db.selectFrom('merchants').selectAll().where('id', '=', merchantId).executeTakeFirst();
  if (row === undefined || !isGatewayName(row.gateway)) return undefined;
  return {
    id: row.id,
    country: row.country,
    gateway: row.gateway,
    livemode: row.livemode,
    partnerSecretKey: cipher.decrypt(row.partner_secret_key_encrypted),
  };
}
