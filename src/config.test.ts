// Proves the parsing of the settings whose mistakes are dangerous rather than merely wrong: KEEL_TRUST_PROXY
// (trusting every hop would let any client choose its IP), KEEL_RETENTION_DAYS, and the breakers' rate rule
// (shared and per partner).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { loadConfig, parseTrustProxy } from './config.js';
import { ResourceRegistry } from './resilience/resources.js';

test('KEEL_TRUST_PROXY: off by default, a hop count, or addresses and CIDR ranges; "true" and garbage refused', () => {
  assert.equal(loadConfig({}).trustProxy, false);
  assert.equal(parseTrustProxy('off'), false);
  assert.equal(parseTrustProxy('0'), false);
  assert.equal(parseTrustProxy('2'), 2);
  assert.deepEqual(parseTrustProxy('10.0.0.0/8, 192.168.1.7,::1,fd00::/8,loopback'), ['10.0.0.0/8', '192.168.1.7', '::1', 'fd00::/8', 'loopback']);
  for (const bad of ['true', '10.0.0.0/33', 'proxy.internal', '10.0.0.1/8/2', '::1/129']) {
    assert.throws(() => parseTrustProxy(bad), /KEEL_TRUST_PROXY/, bad);
  }
});

test('KEEL_RETENTION_DAYS: 30 by default, at least 1', () => {
  assert.equal(loadConfig({}).retentionDays, 30);
  assert.equal(loadConfig({ KEEL_RETENTION_DAYS: '7' }).retentionDays, 7);
  assert.equal(loadConfig({ KEEL_RETENTION_DAYS: '0' }).retentionDays, 1);
  assert.throws(() => loadConfig({ KEEL_RETENTION_DAYS: 'forever' }), /KEEL_RETENTION_DAYS/);
});

test('breakers: 20 calls and 50% by default, a partner may have its own rule, a rate outside 1-100 is refused', () => {
  const defaults = loadConfig({});
  assert.deepEqual([defaults.breaker.minimumCalls, defaults.breaker.failureRatePercent, defaults.breaker.windowMs], [20, 50, 10_000]);
  const tuned = loadConfig({ KEEL_BREAKER_MIN_CALLS: '40', KEEL_PARTNER_STRIPE_BREAKER_FAILURE_RATE_PERCENT: '25', KEEL_PARTNER_TOSS_BREAKER_MIN_CALLS: '10' });
  assert.equal(tuned.breaker.minimumCalls, 40);
  assert.deepEqual(tuned.breakerByPartner, { toss: { minimumCalls: 10 }, stripe: { failureRatePercent: 25 } });
  // The registry builds each partner's breaker from the shared rule and the partner's own.
  const resources = new ResourceRegistry({ breaker: tuned.breaker, breakerByPartner: tuned.breakerByPartner, bulkheadMax: 1, bulkheadQueueMax: 0 }, pino({ level: 'silent' }));
  const stripe = resources.get('stripe:api.stripe.com:443:US', 'stripe').breaker;
  for (let index = 0; index < 30; index += 1) stripe.recordSuccess();
  for (let index = 0; index < 10; index += 1) stripe.recordError();
  assert.equal(stripe.state, 'open', '10 of 40 calls is 25%: Stripe\'s own rate');
  const toss = resources.get('toss:api.tosspayments.com:443:KR', 'toss').breaker;
  for (let index = 0; index < 9; index += 1) toss.recordError();
  assert.equal(toss.state, 'closed', 'nine calls: below Toss\'s own minimum of 10');
  toss.recordError();
  assert.equal(toss.state, 'open');
  for (const bad of [{ KEEL_BREAKER_FAILURE_RATE_PERCENT: '0' }, { KEEL_BREAKER_FAILURE_RATE_PERCENT: '150' }, { KEEL_PARTNER_TOSS_BREAKER_MIN_CALLS: '0' }]) {
    assert.throws(() => loadConfig(bad), /BREAKER/, JSON.stringify(bad));
  }
});

test('KEEL_RECONCILE_AT is HH:MM in UTC, 02:00 by default', () => {
  assert.equal(loadConfig({}).reconcileAt, '02:00');
  assert.equal(loadConfig({ KEEL_RECONCILE_AT: '23:59' }).reconcileAt, '23:59');
  for (const bad of ['24:00', '2:00', 'noon', '02:60']) assert.throws(() => loadConfig({ KEEL_RECONCILE_AT: bad }), /KEEL_RECONCILE_AT/, bad);
});

test('the checkout queue: auto by default with a measured capacity; on needs a capacity; bad values refused', () => {
  assert.deepEqual(loadConfig({}).checkoutQueue, { mode: 'auto', capacityPerS: undefined, admissionTtlS: 300 });
  assert.deepEqual(loadConfig({ KEEL_CHECKOUT_QUEUE: 'on', KEEL_CHECKOUT_CAPACITY_PER_S: '12.5', KEEL_QUEUE_ADMISSION_TTL_S: '60' }).checkoutQueue, { mode: 'on', capacityPerS: 12.5, admissionTtlS: 60 });
  assert.equal(loadConfig({ KEEL_CHECKOUT_QUEUE: 'off' }).checkoutQueue.mode, 'off');
  assert.throws(() => loadConfig({ KEEL_CHECKOUT_QUEUE: 'on' }), /KEEL_CHECKOUT_CAPACITY_PER_S/);
  assert.throws(() => loadConfig({ KEEL_CHECKOUT_QUEUE: 'yes' }), /KEEL_CHECKOUT_QUEUE must be auto, on or off/);
  for (const bad of ['0', '-1', 'fast', '2000000']) assert.throws(() => loadConfig({ KEEL_CHECKOUT_CAPACITY_PER_S: bad }), /KEEL_CHECKOUT_CAPACITY_PER_S/, bad);
  assert.throws(() => loadConfig({ KEEL_QUEUE_ADMISSION_TTL_S: '0' }), /KEEL_QUEUE_ADMISSION_TTL_S/);
});
