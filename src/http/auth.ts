import { timingSafeEqual } from 'node:crypto';
import { KeelError } from '../errors.js';

/** The operator token, compared in constant time. */
export function checkAdminToken(header: string | undefined, adminToken: string): void {
  const given = header?.startsWith('Bearer ') === true ? header.slice(7) : '';
  const expected = Buffer.from(adminToken);
  const actual = Buffer.from(given);
  if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) {
    throw new KeelError('api_key_invalid', 'Operator endpoints need Authorization: Bearer <KEEL_ADMIN_TOKEN>.');
  }
}
