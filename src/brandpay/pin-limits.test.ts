// Proves the PIN attempt limits on top of the lockout: 10 a minute per customer and 30 a minute per IP, each
// refusing with 429 rate_limited and a Retry-After; with Redis, two API instances draw on one budget.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { test } from 'node:test';
import { testRedisUrl } from '../testing/harness.js';
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

const redisUrl = testRedisUrl();
test('through Redis, two instances share one budget per customer', { skip: redisUrl === undefined ? 'no KEEL_TEST_REDIS_URL' : false }, async () => {
  const first = new Redis(redisUrl ?? '');
  const second = new Redis(redisUrl ?? '');
  try {
    const namespace = `pin_test_${randomBytes(4).toString('hex')}`;
    const instances = [new PinAttemptLimiter(first, namespace), new PinAttemptLimiter(second, namespace)];
    for (let index = 0; index < pinAttemptsPerCustomerPerMinute; index += 1) {
      assert.equal(await refused(instances[index % 2]?.admit('customer-shared', `10.1.0.${index}`) ?? Promise.resolve()), false);
    }
    assert.equal(await refused(instances[0]?.admit('customer-shared', '10.1.1.1') ?? Promise.resolve()), true);
    assert.equal(await refused(instances[1]?.admit('customer-shared', '10.1.1.2') ?? Promise.resolve()), true);
  } finally {
    first.disconnect();
    second.disconnect();
  }
});
