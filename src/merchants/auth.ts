import type { Kysely } from 'kysely';
import { KeelError } from '../errors.js';
import { authenticateKey, type Authenticated } from './merchants.js';
import { sha256Hex, type FieldCipher } from '../storage/encryption.js';
import type { KeelDatabase } from '../storage/schema.js';

/**
 * API key authentication: `Authorization: Bearer sk_…` or Toss-style `Basic base64("sk_…:")`. A found key is
 * cached briefly (by its hash) so a payment costs no extra round trip; a revoked key stops working within
 * `cacheTtlMs`.
 */
export const authCacheTtlMs = 10_000;
const authCacheEntriesMax = 10_000;

export function apiKeyFrom(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (header.startsWith('Bearer ')) return header.slice(7).trim() || undefined;
  if (header.startsWith('Basic ')) {
    const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
    const user = decoded.endsWith(':') ? decoded.slice(0, -1) : decoded.split(':')[0];
    return user === undefined || user === '' ? undefined : user;
  }
  return undefined;
}

export class Authenticator {
  readonly #db: Kysely<KeelDatabase>;
  readonly #cipher: FieldCipher;
  readonly #cache = new Map<string, { value: Authenticated; expiresAt: number }>();

  constructor(db: Kysely<KeelDatabase>, cipher: FieldCipher) {
    this.#db = db;
    this.#cipher = cipher;
  }

  async authenticate(header: string | undefined, allowPublishable: boolean): Promise<Authenticated> {
    const apiKey = apiKeyFrom(header);
    if (apiKey === undefined) throw new KeelError('authentication_required', 'Provide an API key: Authorization: Bearer sk_test_…');
    const cacheKey = sha256Hex(apiKey);
    const now = Date.now();
    let entry = this.#cache.get(cacheKey);
    if (entry === undefined || entry.expiresAt < now) {
      const found = await authenticateKey(this.#db, this.#cipher, apiKey);
      if (found === undefined) throw new KeelError('api_key_invalid', 'The API key is not valid.');
      if (this.#cache.size >= authCacheEntriesMax) this.#cache.clear();
      entry = { value: found, expiresAt: now + authCacheTtlMs };
      this.#cache.set(cacheKey, entry);
    }
    if (entry.value.keyKind === 'publishable' && !allowPublishable) {
      throw new KeelError('api_key_not_allowed', 'This endpoint needs a secret key; publishable keys only open browser-facing endpoints.');
    }
    return entry.value;
  }

  /** Drops this process's cached contexts of a merchant whose settings changed; other processes expire theirs. */
  forgetMerchant(merchantId: string): void {
    for (const [key, entry] of this.#cache) if (entry.value.merchant.id === merchantId) this.#cache.delete(key);
  }
}
