// Proves webhooks end to end: endpoints with event filters (https, or loopback http in test mode), signed
// deliveries that a receiver verifies with verifyWebhook, retries on the contract's schedule until success or
// failure, a delivery log with status codes and latencies, manual redelivery, and a slow endpoint that delays
// only itself. verifyWebhook refuses tampered, foreign and stale signatures.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTestKeel, testCard, uniqueKey, type TestKeel } from '../testing/harness.js';
import { startWebhookReceiver as receiver } from '../testing/webhook-receiver.js';
import { signWebhook, verifyWebhook } from './signature.js';

let keel: TestKeel;
before(async () => {
  keel = await startTestKeel();
});
after(async () => {
  await keel.close();
});

const pay = (secretKey = keel.merchant.secret_key) =>
  keel.request('POST', '/v1/payments', { body: { amount: 1000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: testCard(), confirm: true }, secretKey });

async function deliver(): Promise<void> {
  await keel.keel.jobs.relay();
  await keel.keel.jobs.webhooks();
}

async function dueNow(): Promise<void> {
  await keel.keel.database.db.updateTable('webhook_deliveries').set({ next_attempt_at: new Date() }).where('status', '=', 'pending').execute();
}

describe('webhook endpoints', () => {
  test('https only, except loopback http in test mode', async () => {
    const plain = await keel.request('POST', '/v1/webhook_endpoints', { body: { url: 'http://shop.example/hooks', events: ['*'] } });
    assert.equal(plain.status, 400);
    assert.equal(plain.body.error.param, 'url');
    const secure = await keel.request('POST', '/v1/webhook_endpoints', { body: { url: 'https://shop.example/hooks', events: ['payment.succeeded'] } });
    assert.equal(secure.status, 200);
    assert.match(secure.body.secret, /^whsec_/);
  });

  test('a signed delivery of the subscribed event only, verified by the receiver', async () => {
    const merchant = await keel.createMerchant({ name: 'Hooked' });
    const hooks = await receiver(() => 200);
    try {
      const endpoint = await keel.request('POST', '/v1/webhook_endpoints', { body: { url: hooks.url, events: ['payment.succeeded'] }, secretKey: merchant.secret_key });
      const payment = await pay(merchant.secret_key);
      await deliver();
      assert.equal(hooks.received.length, 1);
      const [delivery] = hooks.received;
      assert.ok(verifyWebhook(delivery?.body ?? '', delivery?.signature, endpoint.body.secret));
      const body = JSON.parse(delivery?.body ?? '{}');
      assert.equal(body.type, 'payment.succeeded');
      assert.match(body.id, /^evt_/);
      assert.equal(body.data.object.id, payment.body.id);
      const event = await keel.request('GET', `/v1/events/${body.id}`, { secretKey: merchant.secret_key });
      assert.equal(event.body.type, 'payment.succeeded');
      await deliver();
      assert.equal(hooks.received.length, 1, 'delivered once');
    } finally {
      await hooks.close();
    }
  });

  test('non-2xx answers are retried on the schedule until success; the log keeps codes and latencies', async () => {
    const merchant = await keel.createMerchant({ name: 'Flaky' });
    const hooks = await receiver((count) => (count <= 2 ? 500 : 200));
    try {
      const endpoint = await keel.request('POST', '/v1/webhook_endpoints', { body: { url: hooks.url, events: ['payment.succeeded'] }, secretKey: merchant.secret_key });
      await pay(merchant.secret_key);
      await deliver();
      const log = async () => (await keel.request('GET', `/v1/webhook_endpoints/${endpoint.body.id}/deliveries`, { secretKey: merchant.secret_key })).body.data[0];
      let entry = await log();
      assert.deepEqual([entry.status, entry.attempts, entry.last_status_code], ['pending', 1, 500]);
      const firstRetryInMs = Date.parse(entry.next_attempt_at) - Date.now();
      assert.ok(firstRetryInMs > 50_000 && firstRetryInMs <= 60_000, `first retry after 1 minute (${firstRetryInMs} ms)`);
      await dueNow();
      await keel.keel.jobs.webhooks();
      entry = await log();
      const secondRetryInMs = Date.parse(entry.next_attempt_at) - Date.now();
      assert.ok(secondRetryInMs > 3.9 * 60_000 && secondRetryInMs <= 4 * 60_000, 'then after 4 minutes');
      await dueNow();
      await keel.keel.jobs.webhooks();
      entry = await log();
      assert.deepEqual([entry.status, entry.attempts, entry.last_status_code, entry.next_attempt_at], ['succeeded', 3, 200, null]);
      assert.equal(typeof entry.last_latency_ms, 'number');
    } finally {
      await hooks.close();
    }
  });

  test('after the last retry a delivery is marked failed; manual redelivery sends it again', async () => {
    const merchant = await keel.createMerchant({ name: 'Down' });
    let healthy = false;
    const hooks = await receiver(() => (healthy ? 200 : 503));
    try {
      const endpoint = await keel.request('POST', '/v1/webhook_endpoints', { body: { url: hooks.url, events: ['*'] }, secretKey: merchant.secret_key });
      await pay(merchant.secret_key);
      await deliver();
      for (let round = 0; round < 7; round += 1) {
        await dueNow();
        await keel.keel.jobs.webhooks();
      }
      const log = (await keel.request('GET', `/v1/webhook_endpoints/${endpoint.body.id}/deliveries`, { secretKey: merchant.secret_key })).body.data;
      assert.ok(log.every((entry: { status: string; attempts: number }) => entry.status === 'failed' && entry.attempts === 8), JSON.stringify(log));
      healthy = true;
      const eventId = JSON.parse(hooks.received[0]?.body ?? '{}').id;
      const redelivered = await keel.request('POST', `/v1/events/${eventId}/redeliver`, { body: {}, secretKey: merchant.secret_key });
      assert.equal(redelivered.status, 200);
      const before = hooks.received.length;
      await keel.keel.jobs.webhooks();
      assert.equal(hooks.received.length, before + 1);
    } finally {
      await hooks.close();
    }
  });

  test('a slow endpoint of one merchant does not delay another merchant\'s deliveries', async () => {
    const slowMerchant = await keel.createMerchant({ name: 'Slow' });
    const fastMerchant = await keel.createMerchant({ name: 'Fast' });
    const slow = await receiver(() => new Promise<number>((resolve) => setTimeout(() => resolve(200), 2_000)));
    const fast = await receiver(() => 200);
    try {
      await keel.request('POST', '/v1/webhook_endpoints', { body: { url: slow.url, events: ['*'] }, secretKey: slowMerchant.secret_key });
      await keel.request('POST', '/v1/webhook_endpoints', { body: { url: fast.url, events: ['*'] }, secretKey: fastMerchant.secret_key });
      await pay(slowMerchant.secret_key);
      await pay(fastMerchant.secret_key);
      await keel.keel.jobs.relay();
      const started = Date.now();
      await keel.keel.jobs.webhooks();
      assert.equal(fast.received.length, 2);
      assert.ok((fast.received[1]?.at ?? Infinity) - started < 1_500, 'the fast endpoint got both events while the slow one was still answering');
      assert.equal(slow.received.length, 2);
    } finally {
      await slow.close();
      await fast.close();
    }
  });
});

describe('verifyWebhook', () => {
  test('accepts a fresh signature; refuses tampering, another secret and stale timestamps', () => {
    const body = '{"id":"evt_1","type":"payment.succeeded"}';
    const now = 1_800_000_000;
    const header = signWebhook(body, 'whsec_a', now);
    assert.match(header, /^t=1800000000,v1=[0-9a-f]{64}$/);
    assert.equal(verifyWebhook(body, header, 'whsec_a', 300, now + 10), true);
    assert.equal(verifyWebhook(`${body} `, header, 'whsec_a', 300, now), false);
    assert.equal(verifyWebhook(body, header, 'whsec_b', 300, now), false);
    assert.equal(verifyWebhook(body, header, 'whsec_a', 300, now + 301), false);
    assert.equal(verifyWebhook(body, undefined, 'whsec_a'), false);
    assert.equal(verifyWebhook(body, `${header},v1=${'0'.repeat(64)}`, 'whsec_a', 300, now), true, 'one matching signature of several is enough');
  });
});
