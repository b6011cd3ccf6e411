import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import { gatewayNames, type GatewayName } from '../gateways/connector.js';
import type { MerchantContext, MerchantPartner } from './types.js';
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
  /** The first-choice partner (shorthand for a one-partner `partners` list). */
  readonly gateway?: GatewayName | undefined;
  /** The merchant's own key at that partner; absent: a test key for the benchmark gateway is generated. */
  readonly partnerSecretKey?: string | undefined;
  /** Partners in priority order; a payment goes to the next one when the first cannot be reached. */
  readonly partners?: readonly { readonly gateway: GatewayName; readonly partnerSecretKey?: string | undefined }[] | undefined;
  readonly rateLimit?: { readonly perSecond: number; readonly burst: number } | undefined;
  /** The hosted Brand Pay page's colour (`#rrggbb`) and logo URL. */
  readonly brandColor?: string | undefined;
  readonly brandLogoUrl?: string | undefined;
}

function testPartnerKey(gateway: GatewayName): string {
  return gateway === 'toss' ? randomKey('test_sk_') : randomKey('sk_test_');
}

export function primaryGateway(merchant: MerchantContext): GatewayName {
  const first = merchant.partners[0];
  if (first === undefined) throw new Error(`merchant ${merchant.id} has no partner`);
  return first.gateway;
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
  const partners = (input.partners ?? [{ gateway: input.gateway ?? 'toss', partnerSecretKey: input.partnerSecretKey }]).map((partner) => ({
    gateway: partner.gateway,
    partnerSecretKey: partner.partnerSecretKey ?? testPartnerKey(partner.gateway),
  }));
  const primary = partners[0];
  if (primary === undefined || new Set(partners.map((partner) => partner.gateway)).size !== partners.length) {
    throw new Error('a merchant needs at least one partner, each listed once');
  }
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
        gateway: primary.gateway,
        partner_secret_key_encrypted: cipher.encrypt(primary.partnerSecretKey),
        livemode: false,
        ...(input.brandColor === undefined ? {} : { brand_color: input.brandColor }),
        brand_logo_url: input.brandLogoUrl ?? null,
        rate_limit_per_second: input.rateLimit?.perSecond ?? null,
        rate_limit_burst: input.rateLimit?.burst ?? null,
      })
      .execute();
    await trx
      .insertInto('merchant_partners')
      .values(
        partners.map((partner, priority) => ({
          merchant_id: uuid,
          gateway: partner.gateway,
          priority,
          partner_secret_key_encrypted: cipher.encrypt(partner.partnerSecretKey),
        })),
      )
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
  readonly keyId: string;
}

export async function authenticateKey(db: Kysely<KeelDatabase>, cipher: FieldCipher, apiKey: string): Promise<Authenticated | undefined> {
  const row = await db
    .selectFrom('api_keys')
    .select(['id', 'kind', 'merchant_id'])
    .where('key_hash', '=', sha256Hex(apiKey))
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  if (row === undefined) return undefined;
  const merchant = await loadMerchantContext(db, cipher, row.merchant_id);
  return merchant === undefined ? undefined : { keyKind: row.kind, keyId: row.id, merchant };
}

export async function loadMerchantContext(db: Kysely<KeelDatabase>, cipher: FieldCipher, merchantId: string): Promise<MerchantContext | undefined> {
  const merchant = await db
    .selectFrom('merchants')
    .select(['id', 'country', 'livemode', 'rate_limit_per_second', 'rate_limit_burst'])
    .where('id', '=', merchantId)
    .executeTakeFirst();
  if (merchant === undefined) return undefined;
  const rows = await db
    .selectFrom('merchant_partners')
    .select(['gateway', 'partner_secret_key_encrypted'])
    .where('merchant_id', '=', merchantId)
    .orderBy('priority')
    .execute();
  const partners: MerchantPartner[] = [];
  for (const row of rows) {
    if (isGatewayName(row.gateway)) partners.push({ gateway: row.gateway, partnerSecretKey: cipher.decrypt(row.partner_secret_key_encrypted) });
  }
  if (partners.length === 0) return undefined;
  const perSecond = merchant.rate_limit_per_second;
  const rateLimit = perSecond === null ? null : { perSecond, burst: merchant.rate_limit_burst ?? perSecond * 2 };
  return { id: merchant.id, country: merchant.country, livemode: merchant.livemode, partners, rateLimit };
}
