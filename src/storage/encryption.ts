import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from 'node:crypto';

/**
 * Field encryption at rest: AES-256-GCM with a random 96-bit nonce per value, stored as
 * `v1.<nonce>.<ciphertext>.<tag>` in base64url. Partner tokens, partner secret keys and bank account numbers
 * use it; the key comes from `KEEL_ENCRYPTION_KEY` (64 hex digits or 44 base64 characters).
 */
export class FieldCipher {
  readonly #key: Buffer;

  constructor(key: Buffer) {
    assert.equal(key.length, 32, 'the encryption key is 32 bytes');
    this.#key = key;
  }

  static fromSecret(secret: string): FieldCipher {
    if (/^[0-9a-fA-F]{64}$/.test(secret)) return new FieldCipher(Buffer.from(secret, 'hex'));
    const decoded = Buffer.from(secret, 'base64');
    if (decoded.length === 32) return new FieldCipher(decoded);
    throw new Error('KEEL_ENCRYPTION_KEY must be 32 bytes as 64 hex digits or base64');
  }

  static generateSecret(): string {
    return randomBytes(32).toString('hex');
  }

  encrypt(plaintext: string): string {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#key, nonce);
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return ['v1', nonce.toString('base64url'), ciphertext.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
  }

  decrypt(sealed: string): string {
    const [version, nonce, ciphertext, tag] = sealed.split('.');
    if (version !== 'v1' || nonce === undefined || ciphertext === undefined || tag === undefined) throw new Error('not a sealed value');
    const decipher = createDecipheriv('aes-256-gcm', this.#key, Buffer.from(nonce, 'base64url'));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8');
  }

  /** A keyed fingerprint: equal inputs give equal fingerprints, and it cannot be reversed without the key. */
  fingerprint(value: string): string {
    return createHmac('sha256', this.#key).update(value).digest('base64url').slice(0, 22);
  }
}

export function sha256Hex(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}
