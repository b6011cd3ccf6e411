// Proves the shopper velocity limits: PIN attempts (10 a minute per customer, 30 per IP) on top of the lockout,
// and new payment methods (5 an hour per checkout session, 10 a day per customer, 20 an hour per IP), each
// refusing with 429 rate_limited and a Retry-After; with Redis, two API instances draw on one budget.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { test } from 'node:test';
import { testRedisUrl } from '../testing/harness.js';
import { isKeelError } from '../errors.js';
import { ShopperLimits, newMethodsPerCustomerPerDay, newMethodsPerIpPerHour, newMethodsPerSessionPerHour, pinAttemptsPerCustomerPerMinute, pinAttemptsPerIpPerMinute } from './shopper-limits.js';

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
  const limiter = new ShopperLimits();
  for (let index = 0; index < pinAttemptsPerCustomerPerMinute; index += 1) assert.equal(await refused(limiter.admitPin({ customerId: 'customer-a', ip: `10.0.0.${index}` })), false);
  assert.equal(await refused(limiter.admitPin({ customerId: 'customer-a', ip: '10.0.1.1' })), true);
  assert.equal(await refused(limiter.admitPin({ customerId: 'customer-b', ip: '10.0.1.1' })), false);
});

test('per IP: guesses spread across customers from one address stop at 30 a minute', async () => {
  const limiter = new ShopperLimits();
  for (let index = 0; index < pinAttemptsPerIpPerMinute; index += 1) assert.equal(await refused(limiter.admitPin({ customerId: `customer-${index}`, ip: '192.0.2.7' })), false);
  assert.equal(await refused(limiter.admitPin({ customerId: 'customer-new', ip: '192.0.2.7' })), true);
  assert.equal(await refused(limiter.admitPin({ customerId: 'customer-new', ip: '192.0.2.8' })), false);
});

const redisUrl = testRedisUrl();
test('through Redis, two instances share one budget per customer', { skip: redisUrl === undefined ? 'no KEEL_TEST_REDIS_URL' : false }, async () => {
  const first = new Redis(redisUrl ?? '');
  const second = new Redis(redisUrl ?? '');
  try {
    const namespace = `pin_test_${randomBytes(4).toString('hex')}`;
    const instances = [new ShopperLimits(first, namespace), new ShopperLimits(second, namespace)];
    for (let index = 0; index < pinAttemptsPerCustomerPerMinute; index += 1) {
      assert.equal(await refused(instances[index % 2]?.admitPin({ customerId: 'customer-shared', ip: `10.1.0.${index}` }) ?? Promise.resolve()), false);
    }
    assert.equal(await refused(instances[0]?.admitPin({ customerId: 'customer-shared', ip: '10.1.1.1' }) ?? Promise.resolve()), true);
    assert.equal(await refused(instances[1]?.admitPin({ customerId: 'customer-shared', ip: '10.1.1.2' }) ?? Promise.resolve()), true);
  } finally {
    first.disconnect();
    second.disconnect();
  }
});

test('new payment methods: 5 an hour per session, 10 a day per customer, 20 an hour per IP', async () => {
  const limiter = new ShopperLimits();
  for (let index = 0; index < newMethodsPerSessionPerHour; index += 1) assert.equal(await refused(limiter.admitNewMethod({ customerId: 'c1', sessionId: 's1', ip: '10.2.0.1' })), false);
  assert.equal(await refused(limiter.admitNewMethod({ customerId: 'c1', sessionId: 's1', ip: '10.2.0.2' })), true, 'the session is spent');
  for (let index = newMethodsPerSessionPerHour; index < newMethodsPerCustomerPerDay; index += 1) {
    assert.equal(await refused(limiter.admitNewMethod({ customerId: 'c1', sessionId: `s-${index}`, ip: `10.2.1.${index}` })), false);
  }
  assert.equal(await refused(limiter.admitNewMethod({ customerId: 'c1', sessionId: 's-new', ip: '10.2.2.1' })), true, 'the customer is spent');
  // The merchant's server (no session, no IP) draws on the customer's budget too.
  assert.equal(await refused(limiter.admitNewMethod({ customerId: 'c1' })), true);
  const ip = new ShopperLimits();
  for (let index = 0; index < newMethodsPerIpPerHour; index += 1) assert.equal(await refused(ip.admitNewMethod({ customerId: `c-${index}`, sessionId: `s-${index}`, ip: '198.51.100.9' })), false);
  assert.equal(await refused(ip.admitNewMethod({ customerId: 'c-fresh', sessionId: 's-fresh', ip: '198.51.100.9' })), true, 'the address is spent');
  assert.equal(await refused(ip.admitNewMethod({ customerId: 'c-fresh', sessionId: 's-fresh', ip: '198.51.100.10' })), false);
});
