import assert from 'node:assert/strict';
import { pooledRandomBytes } from './random.js';

/**
 * Identifiers are time-ordered so B-tree inserts stay on the right edge: UUIDv7 in `uuid` columns, and a public
 * form of a type prefix plus the same 128 bits as 26 Crockford base32 characters (ULID-compatible), e.g.
 * `pay_01JD…`. The two forms convert both ways, so the API never needs a second lookup column.
 */

const crockford = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const crockfordIndex = new Map<string, number>([...crockford].map((char, index) => [char, index]));
const publicIdBodyLength = 26;

export const idPrefixes = {
  merchant: 'mer',
  payment: 'pay',
  attempt: 'att',
  refund: 're',
  event: 'evt',
  customer: 'cus',
  paymentMethod: 'pm',
  apiKey: 'key',
  checkoutSession: 'cs',
  anomaly: 'anom',
  reconciliationRun: 'recon',
  webhookEndpoint: 'we',
  webhookDelivery: 'whd',
  incident: 'inc',
  postmortem: 'pmr',
  actionItem: 'act',
  queueTicket: 'qt',
} as const;
export type IdKind = keyof typeof idPrefixes;

let lastMillis = 0;
let sequence = 0;

/** A UUIDv7: 48 bits of Unix milliseconds, then random bits; monotonic within one process and millisecond. */
export function uuidv7(now: number = Date.now()): string {
  const bytes = pooledRandomBytes(16);
  if (now <= lastMillis) {
    sequence = (sequence + 1) & 0xfff;
    now = lastMillis + (sequence === 0 ? 1 : 0);
  } else {
    sequence = bytes.readUInt16BE(6) & 0x7ff;
  }
  lastMillis = now;
  bytes.writeUIntBE(now, 0, 6);
  bytes[6] = 0x70 | ((sequence >> 8) & 0x0f);
  bytes[7] = sequence & 0xff;
  bytes[8] = 0x80 | ((bytes[8] ?? 0) & 0x3f);
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function uuidToPublic(kind: IdKind, uuid: string): string {
  const hex = uuid.replaceAll('-', '');
  assert.equal(hex.length, 32, 'a uuid has 32 hex digits');
  // The 128 bits read 4 at a time into 5-bit Crockford digits, most significant first, behind 2 zero bits
  // (26 digits hold 130): plain integer arithmetic, no BigInt.
  let body = '';
  let held = 0;
  let heldBits = 2;
  for (let index = 0; index < 32; index += 1) {
    held = (held << 4) | hexValue(hex.charCodeAt(index));
    heldBits += 4;
    if (heldBits >= 5) {
      heldBits -= 5;
      body += crockford[(held >> heldBits) & 31];
      held &= (1 << heldBits) - 1;
    }
  }
  return `${idPrefixes[kind]}_${body}`;
}

function hexValue(code: number): number {
  if (code >= 48 && code <= 57) return code - 48;
  if (code >= 97 && code <= 102) return code - 87;
  if (code >= 65 && code <= 70) return code - 55;
  throw new Error('a uuid has hex digits only');
}

/** The uuid behind a public id, or undefined when the id is malformed or of another kind. */
export function publicToUuid(kind: IdKind, publicId: string): string | undefined {
  const prefix = `${idPrefixes[kind]}_`;
  if (!publicId.startsWith(prefix) || publicId.length !== prefix.length + publicIdBodyLength) return undefined;
  let value = 0n;
  for (const char of publicId.slice(prefix.length).toUpperCase()) {
    const digit = crockfordIndex.get(char);
    if (digit === undefined) return undefined;
    value = (value << 5n) | BigInt(digit);
  }
  if (value >> 128n !== 0n) return undefined;
  const hex = value.toString(16).padStart(32, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function newId(kind: IdKind): { uuid: string; publicId: string } {
  const uuid = uuidv7();
  return { uuid, publicId: uuidToPublic(kind, uuid) };
}
