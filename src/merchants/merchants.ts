import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import { gatewayNames, type GatewayName } from '../gateways/connector.js';
import type { ContractFeeTerms, MerchantContext, MerchantPartner } from './types.js';
import { sha256Hex, type FieldCipher } from '../storage/encryption.js';
import { newId, publicToUuid, uuidToPublic } from '../storage/ids.js';
import { KeelError } from '../errors.js';
import { contractFeePattern } from '../http/schemas.js';
import type { KeelDatabase } from '../storage/schema.js';

/**
 * Merchants and their API keys. Keys are shown once at creation and stored as SHA-256 hashes; the partner
 * secret key Keel uses on the merchant's behalf is stored encrypted. A test merchant (`sk_test_`) without a
 * partner key gets a generated one for the benchmark gateway; a live merchant (`sk_live_`) never does.
 */
export interface NewMerchant {
  readonly name: string;
  readonly brandName?: string | undefined;
  readonly country?: string | undefined;
  /** The first-choice partner (shorthand for a one-partner `partners` list). */
  readonly gateway?: GatewayName | undefined;
  /** The merchant's own key at that partner; absent: a test key for the benchmark gateway (test mode only). */
  readonly partnerSecretKey?: string | undefined;
  /** Partners in priority order; a payment goes to the next one when the first cannot be reached. */
  readonly partners?: readonly { readonly gateway: GatewayName; readonly partnerSecretKey?: string | undefined; readonly contractFee?: ContractFeeTerms | undefined }[] | undefined;
  readonly rateLimit?: { readonly perSecond: number; readonly burst: number } | undefined;
  /** The hosted Brand Pay page's colour (`#rrggbb`) and logo URL. */
  readonly brandColor?: string | undefined;
  readonly brandLogoUrl?: string | undefined;
  /** Live mode: `sk_live_`/`pk_live_` keys, `livemode: true`, real partner URLs only (see docs/going-live.md). */
  readonly live?: boolean | undefined;
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

/** `"2.5%"` → 250 basis points; `"2.9% + 30"` → 290 basis points and 30 minor units; undefined: not a fee. */
export function parseContractFee(text: string): ContractFeeTerms | undefined {
  const match = new RegExp(contractFeePattern).exec(text.trim());
  if (match === null) return undefined;
  return { rateBps: Number(match[1]) * 100 + Number((match[2] ?? '').padEnd(2, '0')), fixed: BigInt(match[3] ?? '0') };
}

/** The written form of a contract fee, as `parseContractFee` reads it. */
export function formatContractFee(terms: ContractFeeTerms): string {
  const percent = `${Math.floor(terms.rateBps / 100)}${terms.rateBps % 100 === 0 ? '' : `.${String(terms.rateBps % 100).padStart(2, '0').replace(/0$/, '')}`}%`;
  return terms.fixed === 0n ? percent : `${percent}+${terms.fixed}`;
}

/** The contract fees given by name (`toss_fee`, `--stripe-fee`), absent ones left out; a malformed one is refused. */
export function namedContractFees(toss: string | undefined, stripe: string | undefined): Partial<Record<GatewayName, ContractFeeTerms>> {
  const fees: Partial<Record<GatewayName, ContractFeeTerms>> = {};
  for (const [gateway, text] of [['toss', toss], ['stripe', stripe]] as const) {
    if (text === undefined) continue;
    const terms = parseContractFee(text);
    if (terms === undefined) throw new KeelError('parameter_invalid', `The ${gateway} fee must read like "2.5%" or "2.9%+30".`, { param: `${gateway}_fee` });
    fees[gateway] = terms;
  }
  return fees;
}

/** The first partner given something by name (a key, a fee) that the merchant does not list; undefined: none. */
export function unlistedPartner(partners: readonly GatewayName[], named: Readonly<Partial<Record<GatewayName, unknown>>>): GatewayName | undefined {
  return gatewayNames.find((gateway) => named[gateway] !== undefined && !partners.includes(gateway));
}

/** A fee for a partner the merchant does not list, refused as the API refuses it. */
export function unlistedFeeError(gateway: GatewayName): KeelError {
  return new KeelError('parameter_invalid', `The ${gateway} fee cannot be set: ${gateway} is not one of the merchant's partners.`, { param: `${gateway}_fee` });
}

/** The partner keys given by name (`toss_secret_key`, `--stripe-secret-key` and the like), absent ones left out. */
export function namedPartnerKeys(toss: string | undefined, stripe: string | undefined): Partial<Record<GatewayName, string>> {
  return { ...(toss === undefined ? {} : { toss }), ...(stripe === undefined ? {} : { stripe }) };
}

/** Which mode a partner secret key belongs to, where its prefix says (Stripe `sk_live_`, Toss `live_sk_`). */
export function partnerKeyMode(gateway: GatewayName, key: string): 'live' | 'test' | undefined {
  const match = gateway === 'stripe' ? /^(?:sk|rk)_(live|test)_/.exec(key) : /^(live|test)_g?sk_/.exec(key);
  return match?.[1] as 'live' | 'test' | undefined;
}

/**
 * Why the shop's partner keys cannot be stored: a key for a partner the merchant does not list, or a key of the
 * other mode (a live key on a test merchant would move real money outside live mode's rules; a test key on a
 * live merchant would fail every payment). Undefined: they can.
 */
export function partnerKeyProblem(
  partners: readonly GatewayName[],
  keys: Readonly<Partial<Record<GatewayName, string | undefined>>>,
  live: boolean,
): { readonly gateway: GatewayName; readonly problem: string } | undefined {
  for (const gateway of gatewayNames) {
    const key = keys[gateway];
    if (key === undefined) continue;
    if (!partners.includes(gateway)) return { gateway, problem: `${gateway} is not one of the merchant's partners` };
    const mode = partnerKeyMode(gateway, key);
    if (mode !== undefined && mode !== (live ? 'live' : 'test')) {
      return { gateway, problem: `it is a ${mode} key and the merchant is ${live ? 'live' : 'in test mode'}` };
    }
  }
  return undefined;
}

export async function createMerchant(db: Kysely<KeelDatabase>, cipher: FieldCipher, input: NewMerchant): Promise<CreatedMerchant> {
  const { uuid } = newId('merchant');
  const live = input.live === true;
  const partners = (input.partners ?? [{ gateway: input.gateway ?? 'toss', partnerSecretKey: input.partnerSecretKey }]).map((partner) => ({
    gateway: partner.gateway,
    partnerSecretKey: partner.partnerSecretKey ?? (live ? null : testPartnerKey(partner.gateway)),
    contractFee: 'contractFee' in partner ? partner.contractFee : undefined,
  }));
  const primary = partners[0];
  if (primary === undefined || new Set(partners.map((partner) => partner.gateway)).size !== partners.length) {
    throw new Error('a merchant needs at least one partner, each listed once');
  }
  const mode = live ? 'live' : 'test';
  const secretKey = randomKey(`sk_${mode}_`);
  const publishableKey = randomKey(`pk_${mode}_`);
  await db.transaction().execute(async (trx) => {
    await trx
      .insertInto('merchants')
      .values({
        id: uuid,
        name: input.name,
        brand_name: input.brandName ?? `${input.name} Pay`,
        country: (input.country ?? 'KR').toUpperCase(),
        gateway: primary.gateway,
        partner_secret_key_encrypted: sealKey(cipher, primary.partnerSecretKey),
        livemode: live,
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
          partner_secret_key_encrypted: sealKey(cipher, partner.partnerSecretKey),
          fee_rate_bps: partner.contractFee?.rateBps ?? null,
          fee_fixed: partner.contractFee?.fixed ?? null,
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

export interface PartnerChanges {
  readonly keys?: Readonly<Partial<Record<GatewayName, string>>>;
  readonly fees?: Readonly<Partial<Record<GatewayName, ContractFeeTerms>>>;
}

export interface MerchantPartners {
  readonly id: string;
  readonly object: 'merchant';
  readonly livemode: boolean;
  /** Each partner: whether Keel holds the shop's key there, and its contract fee (null: standard pricing). */
  readonly partners: { gateway: GatewayName; configured: boolean; contract_fee: string | null }[];
}

/**
 * Sets the shop's own keys and negotiated fees at partners the merchant already lists (a live merchant created
 * before it had them; a new contract). Refused like creation: an unlisted partner, or a key of the other mode.
 * Authentication caches the merchant for up to `authCacheTtlMs`, so a change is used within that time.
 */
export async function updateMerchantPartners(db: Kysely<KeelDatabase>, cipher: FieldCipher, merchantPublicId: string, changes: PartnerChanges): Promise<MerchantPartners> {
  const keys = changes.keys ?? {};
  const fees = changes.fees ?? {};
  const uuid = publicToUuid('merchant', merchantPublicId);
  const merchant = uuid === undefined ? undefined : await db.selectFrom('merchants').select(['id', 'livemode']).where('id', '=', uuid).executeTakeFirst();
  if (merchant === undefined) throw new KeelError('resource_missing', `No such merchant: ${merchantPublicId}.`, { param: 'id' });
  const partnersOf = () => db.selectFrom('merchant_partners').select(['gateway', 'priority', 'partner_secret_key_encrypted', 'fee_rate_bps', 'fee_fixed']).where('merchant_id', '=', merchant.id).orderBy('priority').execute();
  const gateways = (await partnersOf()).map((row) => row.gateway).filter(isGatewayName);
  const refused = partnerKeyProblem(gateways, keys, merchant.livemode);
  if (refused !== undefined) throw new KeelError('parameter_invalid', `The ${refused.gateway} secret key cannot be used: ${refused.problem}.`, { param: `${refused.gateway}_secret_key` });
  const unlisted = unlistedPartner(gateways, fees);
  if (unlisted !== undefined) throw unlistedFeeError(unlisted);
  await db.transaction().execute(async (trx) => {
    for (const gateway of gatewayNames) {
      const key = keys[gateway];
      const fee = fees[gateway];
      const sealed = key === undefined ? undefined : cipher.encrypt(key);
      if (sealed === undefined && fee === undefined) continue;
      await trx
        .updateTable('merchant_partners')
        .set({ ...(sealed === undefined ? {} : { partner_secret_key_encrypted: sealed }), ...(fee === undefined ? {} : { fee_rate_bps: fee.rateBps, fee_fixed: fee.fixed }) })
        .where('merchant_id', '=', merchant.id)
        .where('gateway', '=', gateway)
        .execute();
      if (sealed !== undefined && gateways[0] === gateway) await trx.updateTable('merchants').set({ partner_secret_key_encrypted: sealed }).where('id', '=', merchant.id).execute();
    }
  });
  const partners = (await partnersOf()).flatMap((row) => {
    if (!isGatewayName(row.gateway)) return [];
    const terms = feeTermsOf(row);
    return [{ gateway: row.gateway, configured: row.partner_secret_key_encrypted !== null, contract_fee: terms === null ? null : formatContractFee(terms) }];
  });
  return { id: merchantPublicId, object: 'merchant', livemode: merchant.livemode, partners };
}

function feeTermsOf(row: { fee_rate_bps: number | null; fee_fixed: string | null }): ContractFeeTerms | null {
  return row.fee_rate_bps === null ? null : { rateBps: row.fee_rate_bps, fixed: BigInt(row.fee_fixed ?? '0') };
}

function sealKey(cipher: FieldCipher, key: string | null): string | null {
  return key === null ? null : cipher.encrypt(key);
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
    .select(['gateway', 'partner_secret_key_encrypted', 'fee_rate_bps', 'fee_fixed'])
    .where('merchant_id', '=', merchantId)
    .orderBy('priority')
    .execute();
  const partners: MerchantPartner[] = [];
  for (const row of rows) {
    if (!isGatewayName(row.gateway)) continue;
    partners.push({ gateway: row.gateway, partnerSecretKey: row.partner_secret_key_encrypted === null ? null : cipher.decrypt(row.partner_secret_key_encrypted), contractFee: feeTermsOf(row) });
  }
  if (partners.length === 0) return undefined;
  const perSecond = merchant.rate_limit_per_second;
  const rateLimit = perSecond === null ? null : { perSecond, burst: merchant.rate_limit_burst ?? perSecond * 2 };
  return { id: merchant.id, country: merchant.country, livemode: merchant.livemode, partners, rateLimit };
}
