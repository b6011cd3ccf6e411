import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Webhook signatures: `Keel-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + raw body)>`.
 * `verifyWebhook` is what a merchant's receiver calls on the raw body, before parsing it.
 */
export const signatureToleranceSecondsDefault = 300;

export function signWebhook(rawBody: string, secret: string, timestampSeconds: number = Math.floor(Date.now() / 1000)): string {
  const signature = createHmac('sha256', secret).update(`${timestampSeconds}.${rawBody}`).digest('hex');
  return `t=${timestampSeconds},v1=${signature}`;
}

/**
 * True when `header` carries a valid signature of `rawBody` with `secret`, made within `toleranceS` seconds
 * of now (a replayed old delivery is refused). Compares in constant time; accepts several `v1=` values (a
 * rotation).
 */
export function verifyWebhook(rawBody: string, header: string | undefined, secret: string, toleranceS: number = signatureToleranceSecondsDefault, nowSeconds: number = Math.floor(Date.now() / 1000)): boolean {
  if (header === undefined) return false;
  const parts = header.split(',').map((part) => part.trim().split('='));
  const timestamp = Number(parts.find(([name]) => name === 't')?.[1]);
  if (!Number.isSafeInteger(timestamp) || Math.abs(nowSeconds - timestamp) > toleranceS) return false;
  const expected = Buffer.from(createHmac('sha256', secret).update(`${timestamp}.${rawBody}`).digest('hex'));
  return parts
    .filter(([name, value]) => name === 'v1' && value !== undefined)
    .some(([, value]) => {
      const given = Buffer.from(value ?? '');
      return given.length === expected.length && timingSafeEqual(given, expected);
    });
}
