import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { pooledRandomBytes } from './random.js';

/**
 * Keel's secrets at rest, all from one master key (`KEEL_ENCRYPTION_KEY`, 64 hex digits or 44 base64
 * characters). HKDF-SHA256 derives a separate key for each use, so no key serves two purposes:
 * - field encryption: AES-256-GCM with a random 96-bit nonce per value, stored as
 *   `v2.<nonce>.<ciphertext>.<tag>` in base64url (partner tokens, partner secret keys, bank account numbers,
 *   webhook signing secrets, stored idempotent responses that hold a secret). Values sealed by earlier
 *   versions with the master key itself (`v1.…`) are still opened;
 * - fingerprints: HMAC-SHA256, so equal cards or tokens can be matched without keeping them;
 * - request digests: HMAC-SHA256 over an idempotent request, so a stored digest cannot be brute-forced;
 * - keys for other modules' own signatures (`keyFor`), e.g. the checkout queue's cookie.
 */
export class FieldCipher {
  readonly #masterKey: Buffer;
  readonly #encryptionKey: Buffer;
  readonly #fingerprintKey: Buffer;
  readonly #digestKey: Buffer;

  constructor(masterKey: Buffer) {
    assert.equal(masterKey.length, 32, 'the encryption key is 32 bytes');
    this.#masterKey = masterKey;
    this.#encryptionKey = derive(masterKey, 'keel field encryption');
    this.#fingerprintKey = derive(masterKey, 'keel fingerprint');
    this.#digestKey = derive(masterKey, 'keel request digest');
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
    // A fresh random nonce per value (AES-GCM's 96 bits), drawn from the pooled CSPRNG.
    const nonce = pooledRandomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#encryptionKey, nonce);
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return ['v2', nonce.toString('base64url'), ciphertext.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
  }

  decrypt(sealed: string): string {
    const [version, nonce, ciphertext, tag] = sealed.split('.');
    if ((version !== 'v1' && version !== 'v2') || nonce === undefined || ciphertext === undefined || tag === undefined) throw new Error('not a sealed value');
    const decipher = createDecipheriv('aes-256-gcm', version === 'v1' ? this.#masterKey : this.#encryptionKey, Buffer.from(nonce, 'base64url'));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8');
  }

  /** A keyed fingerprint: equal inputs give equal fingerprints, and it cannot be reversed without the key. */
  fingerprint(value: string): string {
    return createHmac('sha256', this.#fingerprintKey).update(value).digest('base64url').slice(0, 22);
  }

  /** A key of its own for `purpose` (every instance sharing the master key derives the same one). */
  keyFor(purpose: string): Buffer {
    return derive(this.#masterKey, `keel ${purpose}`);
  }

  /** A keyed digest of a request (hex), for telling a retry from a different request under the same key. */
  digest(value: string): string {
    return createHmac('sha256', this.#digestKey).update(value).digest('hex');
  }
}

function derive(masterKey: Buffer, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), purpose, 32));
}

/** An unkeyed digest, only for values with the entropy of a random key (API keys are 24 random bytes). */
export function sha256Hex(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}
