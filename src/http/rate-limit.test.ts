// Proves per-key rate limits: a merchant's own token bucket admits its burst, then answers 429 rate_limit_error
// with Retry-After and RateLimit-* headers (on every answer), and refills; with Redis, two API instances draw on
// one budget; with Redis unreachable, the in-memory insurance keeps limiting instead of failing requests.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { after, before, describe, test } from 'node:test';
import { startTestKeel, testRedisUrl, type TestKeel } from '../testing/harness.js';
import { ApiRateLimiter } from './rate-limit.js';

let keel: TestKeel;
before(async () => {
  keel = await startTestKeel();
});
after(async () => {
  await keel.close();
});

describe('through the API', () => {
  test('the burst is admitted, then 429 with Retry-After and RateLimit headers, then the bucket refills', async () => {
    const merchant = await keel.createMerchant({ name: 'Limited', rateLimit: { perSecond: 2, burst: 4 } });
    const statuses: number[] = [];
    let refused: Awaited<ReturnType<TestKeel['request']>> | undefined;
    for (let index = 0; index < 8; index += 1) {
      const response = await keel.request('GET', '/v1/payments', { secretKey: merchant.secret_key });
      statuses.push(response.status);
      assert.equal(response.headers['ratelimit-limit'], '2');
      assert.ok(response.headers['ratelimit-remaining'] !== undefined);
      assert.ok(Number(response.headers['ratelimit-reset']) >= 1);
      if (response.status === 429) refused ??= response;
    }
    assert.deepEqual(statuses.slice(0, 4), [200, 200, 200, 200], statuses.join(','));
    assert.ok(statuses.slice(4).every((status) => status === 429), statuses.join(','));
    assert.equal(refused?.body.error.type, 'rate_limit_error');
    assert.equal(refused?.body.error.code, 'rate_limited');
    assert.ok(Number(refused?.headers['retry-after']) >= 1);
    await sleep(1_100);
    assert.equal((await keel.request('GET', '/v1/payments', { secretKey: merchant.secret_key })).status, 200);
  });

  test('limits are per API key: another merchant is unaffected', async () => {
    const busy = await keel.createMerchant({ name: 'Busy', rateLimit: { perSecond: 1, burst: 1 } });
    await keel.request('GET', '/v1/payments', { secretKey: busy.secret_key });
    assert.equal((await keel.request('GET', '/v1/payments', { secretKey: busy.secret_key })).status, 429);
    assert.equal((await keel.request('GET', '/v1/payments')).status, 200);
  });

  test('a refused request writes nothing, not even its idempotency key', async () => {
    const merchant = await keel.createMerchant({ name: 'Tight', rateLimit: { perSecond: 1, burst: 1 } });
    await keel.request('GET', '/v1/payments', { secretKey: merchant.secret_key });
    const keysBefore = await keel.keel.database.db.selectFrom('idempotency_keys').select('id').execute();
    const refused = await keel.request('POST', '/v1/payments', { body: { amount: 1, currency: 'KRW', order_id: 'x' }, secretKey: merchant.secret_key });
    assert.equal(refused.status, 429);
    const keysAfter = await keel.keel.database.db.selectFrom('idempotency_keys').select('id').execute();
    assert.equal(keysAfter.length, keysBefore.length);
  });
});

const redisUrl = testRedisUrl();
describe('shared through Redis', { skip: redisUrl === undefined ? 'no KEEL_TEST_REDIS_URL' : false }, () => {
  test('two API instances draw on one budget', async () => {
    const first = new Redis(redisUrl ?? '');
    const second = new Redis(redisUrl ?? '');
    try {
      const instanceA = new ApiRateLimiter(first);
      const instanceB = new ApiRateLimiter(second);
      const key = `key_${randomUUID()}`;
      const policy = { perSecond: 3, burst: 3 };
      const decisions = [];
      for (let index = 0; index < 6; index += 1) decisions.push((await (index % 2 === 0 ? instanceA : instanceB).check(key, policy)).allowed);
      assert.deepEqual(decisions, [true, true, true, false, false, false]);
    } finally {
      first.disconnect();
      second.disconnect();
    }
  });

  test('with Redis unreachable, the in-memory insurance keeps limiting', async () => {
    const unreachable = new Redis('redis://127.0.0.1:9', { enableOfflineQueue: false, maxRetriesPerRequest: 0, lazyConnect: true, retryStrategy: () => null });
    unreachable.on('error', () => undefined);
    try {
      const limiter = new ApiRateLimiter(unreachable);
      const key = `key_${randomUUID()}`;
      const decisions = [];
      for (let index = 0; index < 4; index += 1) decisions.push((await limiter.check(key, { perSecond: 2, burst: 2 })).allowed);
      assert.deepEqual(decisions, [true, true, false, false]);
    } finally {
      unreachable.disconnect();
    }
  });
});
