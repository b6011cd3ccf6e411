// Proves the PIN attempt limits on top of the lockout: 10 a minute per customer and 30 a minute per IP, each
// refusing with 429 rate_limited and a Retry-After.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isKeelError } from '../errors.js';
import { PinAttemptLimiter, pinAttemptsPerCustomerPerMinute, pinAttemptsPerIpPerMinute } from './pin-limits.js';

async function refused(attempt: Promise<void>): Promise<boolean> {
  try {
    await attempt;
    return false;
  } catch (error) {
    assert.ok(isKeelError(error));
    assert.equal(error.code, 'rate_limited');
    assert.ok((error.retryAfterSeconds ?? 0) >= 1);
    return true;
  }
}

test('per customer: the eleventh attempt in a minute is refused, another customer is not', async () => {
  const limiter = new PinAttemptLimiter();
  for (let index = 0; index < pinAttemptsPerCustomerPerMinute; index += 1) assert.equal(await refused(limiter.admit('customer-a', `10.0.0.${index}`)), false);
  assert.equal(await refused(limiter.admit('customer-a', '10.0.1.1')), true);
  assert.equal(await refused(limiter.admit('customer-b', '10.0.1.1')), false);
});

test('per IP: guesses spread across customers from one address stop at 30 a minute', async () => {
  const limiter = new PinAttemptLimiter();
  for (let index = 0; index < pinAttemptsPerIpPerMinute; index += 1) assert.equal(await refused(limiter.admit(`customer-${index}`, '192.0.2.7')), false);
  assert.equal(await refused(limiter.admit('customer-new', '192.0.2.7')), true);
  assert.equal(await refused(limiter.admit('customer-new', '192.0.2.8')), false);
});
