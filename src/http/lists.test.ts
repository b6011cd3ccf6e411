// Proves the cursor lists a shop expects, through the API: refunds (all, or one payment's), events (all, or one
// type), webhook endpoints, Brand Pay customers and payments page newest first with `limit`, `starting_after`
// and `has_more`, show one merchant's objects only, and refuse a cursor of the wrong kind. Webhook endpoints
// can be read, updated and deleted: a disabled endpoint gets no new deliveries and its pending ones wait until
// it is enabled; a deleted one disappears, its pending deliveries fail, and redelivery skips it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestKeel, testCard, uniqueKey, type TestKeel } from '../testing/harness.js';
import { startWebhookReceiver } from '../testing/webhook-receiver.js';
import { publicToUuid } from '../storage/ids.js';

let keel: TestKeel;
let other: { secret_key: string };
before(async () => {
  keel = await startTestKeel();
  other = await keel.createMerchant({ name: 'Other Shop' });
});
after(async () => {
  await keel.close();
});

const pay = (secretKey = keel.merchant.secret_key) =>
  keel.request('POST', '/v1/payments', { secretKey, body: { amount: 9000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: testCard(), confirm: true } });

/** Every page of a list, following `starting_after`; each page no longer than `limit`. */
async function walk(path: string, limit: number, secretKey = keel.merchant.secret_key): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | undefined;
  for (;;) {
    const separator = path.includes('?') ? '&' : '?';
    const page = await keel.request('GET', `${path}${separator}limit=${limit}${cursor === undefined ? '' : `&starting_after=${cursor}`}`, { secretKey });
    assert.equal(page.status, 200, JSON.stringify(page.body));
    assert.equal(page.body.object, 'list');
    assert.ok(page.body.data.length <= limit);
    ids.push(...page.body.data.map((item: { id: string }) => item.id));
    if (!page.body.has_more) return ids;
    cursor = page.body.data.at(-1).id;
  }
}

test('refunds list newest first, in pages, all or one payment\'s, one merchant\'s only', async () => {
  const first = await pay();
  const second = await pay();
  const refunds: string[] = [];
  for (const payment of [first, second, first]) {
    const refund = await keel.request('POST', '/v1/refunds', { body: { payment: payment.body.id, amount: 1000 } });
    assert.equal(refund.status, 200, JSON.stringify(refund.body));
    refunds.push(refund.body.id);
  }
  const foreign = await pay(other.secret_key);
  await keel.request('POST', '/v1/refunds', { secretKey: other.secret_key, body: { payment: foreign.body.id, amount: 1000 } });
  assert.deepEqual(await walk('/v1/refunds', 2), [...refunds].reverse());
  assert.deepEqual(await walk(`/v1/refunds?payment=${first.body.id}`, 1), [refunds[2], refunds[0]]);
  const page = await keel.request('GET', '/v1/refunds?limit=1');
  assert.equal(page.body.data[0].object, 'refund');
  assert.equal(page.body.has_more, true);
  const badCursor = await keel.request('GET', `/v1/refunds?starting_after=${first.body.id}`);
  assert.equal(badCursor.status, 400);
  assert.equal(badCursor.body.error.param, 'starting_after');
  const badPayment = await keel.request('GET', '/v1/refunds?payment=re_nope');
  assert.equal(badPayment.body.error.param, 'payment');
  const tooMany = await keel.request('GET', '/v1/refunds?limit=101');
  assert.equal(tooMany.status, 400);
  assert.equal(tooMany.body.error.param, 'querystring.limit');
});

test('events list newest first, filtered by type, one merchant\'s only', async () => {
  const merchant = await keel.createMerchant({ name: 'Eventful' });
  const payments = [await pay(merchant.secret_key), await pay(merchant.secret_key)];
  await pay(other.secret_key);
  const all = await walk('/v1/events', 3, merchant.secret_key);
  assert.equal(all.length, 4, 'created and succeeded for each payment');
  const succeeded = await keel.request('GET', '/v1/events?type=payment.succeeded', { secretKey: merchant.secret_key });
  assert.deepEqual(succeeded.body.data.map((event: { data: { object: { id: string } } }) => event.data.object.id), payments.map((payment) => payment.body.id).reverse());
  assert.ok(succeeded.body.data.every((event: { object: string; type: string }) => event.object === 'event' && event.type === 'payment.succeeded'));
  const one = await keel.request('GET', `/v1/events/${all[0]}`, { secretKey: merchant.secret_key });
  assert.deepEqual(one.body, (await keel.request('GET', '/v1/events?limit=1', { secretKey: merchant.secret_key })).body.data[0]);
  const badType = await keel.request('GET', '/v1/events?type=DROP', { secretKey: merchant.secret_key });
  assert.equal(badType.status, 400);
  assert.equal(badType.body.error.param, 'querystring.type');
});

test('customers list leaves deleted ones out and finds one by customer_key', async () => {
  const merchant = await keel.createMerchant({ name: 'Customers' });
  const ids: string[] = [];
  for (const key of ['alice', 'bob', 'carol']) {
    const created = await keel.request('POST', '/v1/brandpay/customers', { secretKey: merchant.secret_key, body: { customer_key: key } });
    ids.push(created.body.id);
  }
  await keel.request('POST', `/v1/brandpay/customers/${ids[1]}/delete`, { secretKey: merchant.secret_key, body: {} });
  assert.deepEqual(await walk('/v1/brandpay/customers', 1, merchant.secret_key), [ids[2], ids[0]]);
  const carol = await keel.request('GET', '/v1/brandpay/customers?customer_key=carol', { secretKey: merchant.secret_key });
  assert.deepEqual(carol.body.data.map((customer: { id: string; object: string }) => [customer.id, customer.object]), [[ids[2], 'customer']]);
  assert.deepEqual((await keel.request('GET', '/v1/brandpay/customers', { secretKey: other.secret_key })).body.data, []);
});

test('payments list pages the same way', async () => {
  const merchant = await keel.createMerchant({ name: 'Paging' });
  const made = [];
  for (let index = 0; index < 5; index += 1) made.push((await pay(merchant.secret_key)).body.id);
  assert.deepEqual(await walk('/v1/payments', 2, merchant.secret_key), made.reverse());
});

describe('webhook endpoints', () => {
  test('list, read, update (url, events, disabled), delete', async () => {
    const merchant = await keel.createMerchant({ name: 'Hooks' });
    const created = [];
    for (const path of ['/a', '/b']) {
      const endpoint = await keel.request('POST', '/v1/webhook_endpoints', { secretKey: merchant.secret_key, body: { url: `https://shop.example${path}`, events: ['*'] } });
      created.push(endpoint.body.id);
    }
    const listed = await keel.request('GET', '/v1/webhook_endpoints', { secretKey: merchant.secret_key });
    assert.deepEqual(listed.body.data.map((endpoint: { id: string }) => endpoint.id), [...created].reverse());
    assert.ok(listed.body.data.every((endpoint: Record<string, unknown>) => !('secret' in endpoint) && endpoint['disabled'] === false));
    const updated = await keel.request('POST', `/v1/webhook_endpoints/${created[0]}`, { secretKey: merchant.secret_key, body: { url: 'https://shop.example/new', events: ['payment.succeeded'], disabled: true } });
    assert.equal(updated.status, 200, JSON.stringify(updated.body));
    assert.deepEqual([updated.body.url, updated.body.events, updated.body.disabled, 'secret' in updated.body], ['https://shop.example/new', ['payment.succeeded'], true, false]);
    assert.deepEqual((await keel.request('GET', `/v1/webhook_endpoints/${created[0]}`, { secretKey: merchant.secret_key })).body, updated.body);
    const plain = await keel.request('POST', `/v1/webhook_endpoints/${created[0]}`, { secretKey: merchant.secret_key, body: { url: 'http://shop.example/plain' } });
    assert.equal(plain.status, 400);
    assert.equal(plain.body.error.param, 'url');
    const empty = await keel.request('POST', `/v1/webhook_endpoints/${created[0]}`, { secretKey: merchant.secret_key, body: {} });
    assert.equal(empty.status, 400);
    const foreign = await keel.request('POST', `/v1/webhook_endpoints/${created[0]}`, { secretKey: other.secret_key, body: { disabled: false } });
    assert.equal(foreign.status, 404);
    const deleted = await keel.request('DELETE', `/v1/webhook_endpoints/${created[1]}`, { secretKey: merchant.secret_key });
    assert.deepEqual(deleted.body, { id: created[1], object: 'webhook_endpoint', deleted: true });
    assert.equal((await keel.request('GET', `/v1/webhook_endpoints/${created[1]}`, { secretKey: merchant.secret_key })).status, 404);
    assert.equal((await keel.request('DELETE', `/v1/webhook_endpoints/${created[1]}`, { secretKey: merchant.secret_key })).status, 404);
    assert.deepEqual((await keel.request('GET', '/v1/webhook_endpoints', { secretKey: merchant.secret_key })).body.data.map((endpoint: { id: string }) => endpoint.id), [created[0]]);
  });

  test('a disabled endpoint gets nothing new and holds what was pending until enabled; a deleted one fails its pending and is skipped by redelivery', async () => {
    const merchant = await keel.createMerchant({ name: 'Paused' });
    const hooks = await startWebhookReceiver(() => 200);
    const doomed = await startWebhookReceiver(() => 200);
    try {
      const paused = await keel.request('POST', '/v1/webhook_endpoints', { secretKey: merchant.secret_key, body: { url: hooks.url, events: ['payment.succeeded'] } });
      const gone = await keel.request('POST', '/v1/webhook_endpoints', { secretKey: merchant.secret_key, body: { url: doomed.url, events: ['payment.succeeded'] } });
      // The first payment's deliveries are created (relay), then the endpoint is disabled before they are sent.
      await pay(merchant.secret_key);
      await keel.keel.jobs.relay();
      await keel.request('POST', `/v1/webhook_endpoints/${paused.body.id}`, { secretKey: merchant.secret_key, body: { disabled: true } });
      await keel.request('DELETE', `/v1/webhook_endpoints/${gone.body.id}`, { secretKey: merchant.secret_key });
      await pay(merchant.secret_key);
      await keel.keel.jobs.relay();
      assert.equal(await keel.keel.jobs.webhooks(), 0, 'nothing is sent to a disabled or deleted endpoint');
      const held = await keel.request('GET', `/v1/webhook_endpoints/${paused.body.id}/deliveries`, { secretKey: merchant.secret_key });
      assert.deepEqual(held.body.data.map((delivery: { status: string }) => delivery.status), ['pending'], 'one held delivery; none made while disabled');
      const failed = await keel.keel.database.db.selectFrom('webhook_deliveries').select(['status', 'last_error']).where('endpoint_id', '=', publicToUuid('webhookEndpoint', gone.body.id) ?? '').execute();
      assert.deepEqual(failed, [{ status: 'failed', last_error: 'endpoint deleted' }]);
      await keel.request('POST', `/v1/webhook_endpoints/${paused.body.id}`, { secretKey: merchant.secret_key, body: { disabled: false } });
      assert.equal(await keel.keel.jobs.webhooks(), 1);
      assert.equal(hooks.received.length, 1);
      // Redelivering the first event reaches the live endpoint again, never the deleted one.
      const eventId = JSON.parse(hooks.received[0]?.body ?? '{}').id as string;
      const redelivered = await keel.request('POST', `/v1/events/${eventId}/redeliver`, { secretKey: merchant.secret_key, body: {} });
      assert.deepEqual(redelivered.body.data.map((delivery: { endpoint: string }) => delivery.endpoint), [paused.body.id]);
      await keel.keel.jobs.webhooks();
      assert.equal(hooks.received.length, 2);
      assert.equal(doomed.received.length, 0);
    } finally {
      await hooks.close();
      await doomed.close();
    }
  });
});
