// Runs the example shop (examples/shop.ts, `npm run example`) against a real Keel over HTTP: it registers its
// webhook endpoint, receives the events of a payment and trusts them only after verifyWebhook (a forged
// delivery is refused and not recorded), answers its order-status poll from Keel, and explains fail_url codes.
// The browser test drives its checkout and success pages.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { signWebhook } from '../src/webhooks/signature.js';
import { startTestKeel, testCard, uniqueKey, type TestKeel } from '../src/testing/harness.js';
import { startExampleShop, type ExampleShop } from '../examples/shop.js';

let keel: TestKeel;
let shop: ExampleShop;
before(async () => {
  keel = await startTestKeel({ config: { port: 0 } });
  const keelUrl = await keel.keel.listen();
  shop = await startExampleShop({ keelUrl, secretKey: keel.merchant.secret_key, publishableKey: keel.merchant.publishable_key, customerKey: uniqueKey('shopper'), amount: 5000, webhooks: true });
});
after(async () => {
  await shop.close();
  await keel.close();
});

test('the shop receives its payment events, verified, and refuses a forged delivery', async () => {
  const paid = await keel.request('POST', '/v1/payments', { body: { amount: 5000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: testCard(), confirm: true } });
  assert.equal(paid.status, 200, JSON.stringify(paid.body));
  await keel.keel.jobs.relay();
  await keel.keel.jobs.webhooks();
  assert.deepEqual(shop.events.map((event) => [event.type, event.object['id']]), [['payment.created', paid.body.id], ['payment.succeeded', paid.body.id]]);
  const forged = JSON.stringify({ id: 'evt_forged', type: 'payment.succeeded', created_at: new Date().toISOString(), data: { object: { id: 'pay_forged' } } });
  const answer = await fetch(`${shop.url}/webhooks`, { method: 'POST', body: forged, headers: { 'keel-signature': signWebhook(forged, 'whsec_not_the_secret') } });
  assert.equal(answer.status, 400);
  assert.equal(shop.refusedDeliveries(), 1);
  assert.equal(shop.events.length, 2);
  const status = (await (await fetch(`${shop.url}/orders/status?payment=${paid.body.id}`)).json()) as { status: string };
  assert.equal(status.status, 'succeeded');
});

test('the fail page explains the code Keel sent', async () => {
  const page = await (await fetch(`${shop.url}/fail?code=customer_locked`)).text();
  assert.match(page, /Too many wrong PINs/);
  const unknown = await (await fetch(`${shop.url}/fail?code=%3Cscript%3E`)).text();
  assert.doesNotMatch(unknown, /<script>/, 'the code is escaped');
});
