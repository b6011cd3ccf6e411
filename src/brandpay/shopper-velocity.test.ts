// Proves the shopper velocity limits through the hosted page's endpoints: card testing (25 new cards through one
// checkout session in seconds) stops after 5 with 429 and Retry-After, before the partner tokenizes the sixth;
// and behind a load balancer (KEEL_TRUST_PROXY) each shopper is limited on their own forwarded address, so one
// guesser's wrong PINs do not lock out the shoppers behind the same balancer — while without the setting a
// forged X-Forwarded-For changes nothing.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestKeel, uniqueKey, type TestKeel } from '../testing/harness.js';
import { newMethodsPerSessionPerHour, pinAttemptsPerIpPerMinute } from './shopper-limits.js';

let direct: TestKeel;
let proxied: TestKeel;
before(async () => {
  direct = await startTestKeel();
  proxied = await startTestKeel({ config: { trustProxy: ['10.0.0.0/8'] } });
});
after(async () => {
  await direct.close();
  await proxied.close();
});

async function newSession(keel: TestKeel): Promise<{ session: string; customer: string }> {
  const customer = (await keel.request('POST', '/v1/brandpay/customers', { body: { customer_key: uniqueKey('shopper') } })).body.id;
  const session = await keel.request('POST', '/v1/brandpay/checkout_sessions', {
    body: { customer, amount: 5000, currency: 'KRW', order_id: uniqueKey('ord'), success_url: 'https://shop.example/ok', fail_url: 'https://shop.example/fail' },
  });
  assert.equal(session.status, 200, JSON.stringify(session.body));
  return { session: session.body.id, customer };
}

/** Card numbers that pass the Luhn check, one per index. */
function testedCard(index: number): string {
  const body = `4000${String(index).padStart(11, '0')}`;
  for (let check = 0; check <= 9; check += 1) {
    const candidate = `${body}${check}`;
    let sum = 0;
    for (let position = 0; position < candidate.length; position += 1) {
      let digit = Number(candidate[candidate.length - 1 - position]);
      if (position % 2 === 1) digit = digit * 2 > 9 ? digit * 2 - 9 : digit * 2;
      sum += digit;
    }
    if (sum % 10 === 0) return candidate;
  }
  throw new Error('unreachable');
}

describe('card testing', () => {
  test('25 new cards through one session: 5 are tokenized, the rest are 429 with Retry-After before reaching the partner', async () => {
    const { session, customer } = await newSession(direct);
    const statuses: number[] = [];
    let retryAfter: unknown;
    for (let index = 0; index < 25; index += 1) {
      const response = await direct.request('POST', `/pay/${session}/payment_methods`, {
        body: { type: 'card', card: { number: testedCard(index), exp_month: 12, exp_year: 2034, cvc: '123' } },
        secretKey: null,
        idempotencyKey: null,
      });
      statuses.push(response.status);
      if (response.status === 429) {
        assert.equal(response.body.error.code, 'rate_limited');
        retryAfter = response.headers['retry-after'];
      }
    }
    assert.deepEqual(statuses, [...Array(newMethodsPerSessionPerHour).fill(201), ...Array(25 - newMethodsPerSessionPerHour).fill(429)]);
    assert.ok(Number(retryAfter) >= 1);
    const stored = await direct.request('GET', `/v1/brandpay/customers/${customer}/payment_methods`);
    assert.equal(stored.body.data.length, newMethodsPerSessionPerHour, 'only the admitted cards exist');
  });
});

describe('behind a load balancer', () => {
  const balancer = '10.0.0.2';

  async function exhaustPinBudget(keel: TestKeel, forwardedFor: string): Promise<void> {
    // One guesser: a new session per guess (so the per-customer budget and the lockout are not what stops it).
    for (let attempt = 0; attempt < pinAttemptsPerIpPerMinute; attempt += 1) {
      const { session } = await newSession(keel);
      const response = await keel.request('POST', `/pay/${session}/approve`, {
        body: { payment_method: 'pm_00000000000000000000000000', pin: '000000' },
        secretKey: null,
        idempotencyKey: null,
        remoteAddress: balancer,
        headers: { 'x-forwarded-for': forwardedFor },
      });
      assert.notEqual(response.status, 429, `attempt ${attempt + 1} was refused early`);
    }
  }

  const shopperApproves = async (keel: TestKeel, forwardedFor: string) => {
    const { session } = await newSession(keel);
    return keel.request('POST', `/pay/${session}/approve`, {
      body: { payment_method: 'pm_00000000000000000000000000', pin: '000000' },
      secretKey: null,
      idempotencyKey: null,
      remoteAddress: balancer,
      headers: { 'x-forwarded-for': forwardedFor },
    });
  };

  test('with KEEL_TRUST_PROXY, one guesser spends only its own address\'s budget; other shoppers keep theirs', async () => {
    await exhaustPinBudget(proxied, '203.0.113.66');
    const guesser = await shopperApproves(proxied, '203.0.113.66');
    assert.equal(guesser.status, 429);
    assert.ok(Number(guesser.headers['retry-after']) >= 1);
    const shopper = await shopperApproves(proxied, '198.51.100.23');
    assert.notEqual(shopper.status, 429, JSON.stringify(shopper.body));
  });

  test('without it, X-Forwarded-For is ignored: a forged header does not buy a fresh budget', async () => {
    await exhaustPinBudget(direct, '203.0.113.1');
    const forged = await shopperApproves(direct, '203.0.113.99');
    assert.equal(forged.status, 429, 'the connection\'s own address is what counts');
  });
});
