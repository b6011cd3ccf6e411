// Proves live mode: a live merchant gets sk_live_/pk_live_ keys and livemode objects, and its payments go to the
// live partner URL only (a gateway of the test's own standing in for the partner's production API), never to
// the benchmark gateway test merchants use; a live merchant without a key at the partner a payment is routed
// to is refused with 400 gateway_not_configured before anything is written or sent (and pays once the key is
// set), and such a partner is never a failover target; a partner key of the other mode is refused; a live URL pointing at the in-process
// benchmark gateway stops Keel from starting.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, test } from 'node:test';
import { loadConfig } from '../config.js';
import { createKeel } from '../runtime.js';
import { startSimulator, type Simulator } from '../simulator/server.js';
import { startTestKeel, testCard, uniqueKey, type TestKeel } from '../testing/harness.js';

let live: Simulator;
let keel: TestKeel;
before(async () => {
  live = await startSimulator({ port: 0 });
  keel = await startTestKeel({ config: { liveUrls: { toss: live.url, stripe: live.url } } });
});
after(async () => {
  await keel.close();
  await live.close();
});

const admin = (body: unknown) =>
  keel.request('POST', '/admin/merchants', { body, secretKey: null, idempotencyKey: null, headers: { authorization: `Bearer ${keel.keel.services.adminToken}` } });

async function chargesAt(gateway: Simulator | string, orderId: string): Promise<unknown[]> {
  const base = typeof gateway === 'string' ? gateway : gateway.url;
  const answer = (await (await fetch(`${base}/__sim/charges?order_id=${orderId}`)).json()) as { data: unknown[] };
  return answer.data;
}

test('a live merchant has live keys, livemode objects, and charges at the live partner URL only', async () => {
  const created = await admin({ name: 'Live Shop', live: true, gateway: 'toss', toss_secret_key: 'live_sk_shop_own_key' });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.match(created.body.secret_key, /^sk_live_/);
  assert.match(created.body.publishable_key, /^pk_live_/);
  assert.equal(JSON.stringify(created.body).includes('live_sk_shop_own_key'), false);
  const orderId = uniqueKey('ord');
  const paid = await keel.request('POST', '/v1/payments', { secretKey: created.body.secret_key, body: { amount: 5000, currency: 'KRW', order_id: orderId, payment_method: testCard(), confirm: true } });
  assert.equal(paid.status, 200, JSON.stringify(paid.body));
  assert.equal(paid.body.livemode, true);
  assert.equal((await chargesAt(live, orderId)).length, 1);
  assert.equal((await chargesAt(keel.keel.gatewayUrl, orderId)).length, 0);
  // A test merchant's payment stays on the benchmark gateway.
  const testOrder = uniqueKey('ord');
  const testPaid = await keel.request('POST', '/v1/payments', { body: { amount: 5000, currency: 'KRW', order_id: testOrder, payment_method: testCard(), confirm: true } });
  assert.equal(testPaid.status, 200, JSON.stringify(testPaid.body));
  assert.equal(testPaid.body.livemode, false);
  assert.equal((await chargesAt(keel.keel.gatewayUrl, testOrder)).length, 1);
  assert.equal((await chargesAt(live, testOrder)).length, 0);
});

test('a payment routed to a partner the live merchant has no key for is 400 gateway_not_configured and leaves nothing', async () => {
  const created = await admin({ name: 'Keyless Live', live: true, gateway: 'stripe' });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const rowsBefore = await keel.countAllRows();
  const orderId = uniqueKey('ord');
  const refused = await keel.request('POST', '/v1/payments', { secretKey: created.body.secret_key, body: { amount: 5000, currency: 'KRW', order_id: orderId, payment_method: testCard(), confirm: true } });
  assert.equal(refused.status, 400, JSON.stringify(refused.body));
  assert.equal(refused.body.error.code, 'gateway_not_configured');
  assert.equal(refused.body.error.type, 'invalid_request_error');
  assert.deepEqual(await keel.countAllRows(), rowsBefore);
  assert.equal((await chargesAt(live, orderId)).length, 0);
  assert.equal((await chargesAt(keel.keel.gatewayUrl, orderId)).length, 0);
  // The shop's key, set afterwards, is used at once by this process; the answer never shows it.
  const setKey = await keel.request('POST', `/admin/merchants/${created.body.id}`, {
    body: { stripe_secret_key: 'sk_live_added_later' },
    secretKey: null,
    idempotencyKey: null,
    headers: { authorization: `Bearer ${keel.keel.services.adminToken}` },
  });
  assert.equal(setKey.status, 200, JSON.stringify(setKey.body));
  assert.deepEqual(setKey.body.partners, [{ gateway: 'stripe', configured: true, contract_fee: null }]);
  assert.equal(JSON.stringify(setKey.body).includes('added_later'), false);
  const paid = await keel.request('POST', '/v1/payments', { secretKey: created.body.secret_key, body: { amount: 5000, currency: 'KRW', order_id: orderId, payment_method: testCard(), confirm: true } });
  assert.equal(paid.status, 200, JSON.stringify(paid.body));
  assert.equal((await chargesAt(live, orderId)).length, 1);
});

test('a live partner without a key is never a failover target', async () => {
  // Toss has a key but its live URL refuses connections; Stripe, next in line, has no key.
  const unreachable = await startTestKeel({ config: { liveUrls: { toss: 'http://127.0.0.1:9', stripe: live.url } } });
  try {
    const merchant = await unreachable.createMerchant({ name: 'Half Keyed', live: true, country: 'US', partners: [{ gateway: 'toss', partnerSecretKey: 'live_sk_half' }, { gateway: 'stripe' }] });
    const orderId = uniqueKey('ord');
    const answer = await unreachable.request('POST', '/v1/payments', { secretKey: merchant.secret_key, body: { amount: 5000, currency: 'KRW', order_id: orderId, payment_method: testCard(), confirm: true } });
    assert.equal(answer.status, 503, JSON.stringify(answer.body));
    assert.equal(answer.body.error.code, 'gateway_unavailable');
    assert.equal(answer.body.error.payment.gateway, 'toss');
    assert.equal((await chargesAt(live, orderId)).length, 0);
  } finally {
    await unreachable.close();
  }
});

test('a partner key of the other mode is refused and writes nothing', async () => {
  const rowsBefore = await keel.countAllRows();
  const liveKeyOnTest = await admin({ name: 'Mixed', gateway: 'stripe', stripe_secret_key: 'sk_live_real_money' });
  assert.equal(liveKeyOnTest.status, 400, JSON.stringify(liveKeyOnTest.body));
  assert.equal(liveKeyOnTest.body.error.code, 'parameter_invalid');
  assert.equal(liveKeyOnTest.body.error.param, 'stripe_secret_key');
  assert.match(liveKeyOnTest.body.error.message, /live key and the merchant is in test mode/);
  const testKeyOnLive = await admin({ name: 'Mixed', live: true, partners: [{ gateway: 'toss', partner_secret_key: 'test_sk_sandbox' }] });
  assert.equal(testKeyOnLive.status, 400, JSON.stringify(testKeyOnLive.body));
  assert.equal(testKeyOnLive.body.error.param, 'partners');
  assert.deepEqual(await keel.countAllRows(), rowsBefore);
});

test('a live URL that points at the in-process benchmark gateway stops Keel from starting', async () => {
  const port = await freePort();
  const config = { ...loadConfig({}), liveUrls: { toss: `http://localhost:${port}`, stripe: 'https://api.stripe.com' } };
  await assert.rejects(
    createKeel({ config, role: 'all', inMemory: true, simulatorPort: port, logDestination: { write: () => true } }),
    /KEEL_LIVE_TOSS_URL points at the built-in benchmark gateway/,
  );
  // Everything it opened is closed again: the port is free.
  assert.equal(await freePort(port), port);
});

function freePort(port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}
