// Proves that webhooks cannot reach inside and that merchants' endpoints cannot hold each other up:
// - live merchants' endpoints on loopback, private, link-local or metadata addresses are refused at creation
//   (names resolved, every address checked), and again at delivery, so a name that later resolves inside (DNS
//   rebinding) or a literal address stored before gets nothing; test mode keeps loopback http;
// - one merchant's hanging and trickling endpoints do not delay another merchant's deliveries (no round
//   barrier), and are cut off at the delivery deadline, headers and body included;
// - a delivery's lease is fenced: a holder whose lease was taken over cannot write its result, and a holder
//   whose lease cannot cover a whole send does not send.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { startTestKeel, testCard, uniqueKey, type TestKeel } from '../testing/harness.js';
import { startWebhookReceiver } from '../testing/webhook-receiver.js';
import { newId, publicToUuid } from '../storage/ids.js';
import { isForbiddenAddress } from './destination.js';
import { startSimulator, type Simulator } from '../simulator/server.js';
import { DeliveryScheduler, createDeliveryAgent } from './webhooks.js';

let keel: TestKeel;
let livePartner: Simulator;
before(async () => {
  // Live merchants' payments go to the live partner URL: a gateway of this test's own stands in for it.
  livePartner = await startSimulator({ port: 0 });
  keel = await startTestKeel({ config: { liveUrls: { toss: livePartner.url, stripe: livePartner.url } } });
});
after(async () => {
  await keel.close();
  await livePartner.close();
});

const db = () => keel.keel.database.db;
const pay = (secretKey: string) =>
  keel.request('POST', '/v1/payments', { body: { amount: 1000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: testCard(), confirm: true }, secretKey });

function liveMerchant(name: string) {
  return keel.createMerchant({ name, live: true, partnerSecretKey: 'live_sk_isolation' });
}

/** An endpoint row as an earlier Keel, or an earlier DNS answer, let it be stored. */
async function storedEndpoint(merchantId: string, url: string): Promise<string> {
  const { uuid } = newId('webhookEndpoint');
  await db().insertInto('webhook_endpoints').values({ id: uuid, merchant_id: publicToUuid('merchant', merchantId) ?? '', url, events: JSON.stringify(['*']), secret_encrypted: keel.keel.services.deps.cipher.encrypt('whsec_stored') }).execute();
  return uuid;
}

function scheduler(options: { deadlineMs?: number; leaseSeconds?: number } = {}) {
  const { deps } = keel.keel.services;
  return new DeliveryScheduler({ db: deps.db, cipher: deps.cipher, logger: deps.logger, agent: createDeliveryAgent({ live: false }), liveAgent: createDeliveryAgent({ live: true }), ...options });
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const address = server.address();
  return `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
}

describe('webhooks cannot reach inside', () => {
  test('the address rule: private, loopback, link-local, metadata and mapped forms are refused; public ones pass', () => {
    for (const address of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', '::', 'fd00::1', 'fe80::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '64:ff9b::a9fe:a9fe', 'not-an-ip']) {
      assert.equal(isForbiddenAddress(address), true, address);
    }
    for (const address of ['93.184.216.34', '1.1.1.1', '172.32.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8']) assert.equal(isForbiddenAddress(address), false, address);
  });

  test('live mode refuses inside addresses and names that resolve inside at creation; test mode keeps loopback http', async () => {
    const live = await liveMerchant('Live Shop');
    for (const url of ['https://127.0.0.1/hooks', 'https://localhost/hooks', 'https://[::1]/hooks', 'https://10.0.0.5/hooks', 'https://172.16.4.4/hooks', 'https://192.168.0.10/hooks', 'https://169.254.169.254/latest/meta-data/', 'https://[::ffff:127.0.0.1]/hooks', 'https://[fd00::1]/hooks', 'http://93.184.216.34/hooks']) {
      const response = await keel.request('POST', '/v1/webhook_endpoints', { body: { url, events: ['*'] }, secretKey: live.secret_key });
      assert.equal(response.status, 400, `${url}: ${JSON.stringify(response.body)}`);
      assert.equal(response.body.error.param, 'url');
    }
    const publicHost = await keel.request('POST', '/v1/webhook_endpoints', { body: { url: 'https://93.184.216.34/hooks', events: ['*'] }, secretKey: live.secret_key });
    assert.equal(publicHost.status, 200, JSON.stringify(publicHost.body));
    const testMode = await keel.request('POST', '/v1/webhook_endpoints', { body: { url: 'http://127.0.0.1:9/hooks', events: ['*'] } });
    assert.equal(testMode.status, 200, JSON.stringify(testMode.body));
  });

  test('at delivery: a stored name that now resolves to loopback, or a literal inside address, gets nothing; a test merchant\'s loopback endpoint is reached', async () => {
    const hooks = await startWebhookReceiver();
    try {
      const port = new URL(hooks.url).port;
      const live = await liveMerchant('Rebound Shop');
      await storedEndpoint(live.id, `http://localhost:${port}/rebound`);
      await storedEndpoint(live.id, `http://127.0.0.1:${port}/literal`);
      const control = await keel.createMerchant({ name: 'Test Shop Control' });
      await storedEndpoint(control.id, `http://localhost:${port}/control`);
      await pay(live.secret_key);
      await pay(control.secret_key);
      await keel.keel.jobs.relay();
      await keel.keel.jobs.webhooks();
      const paths = hooks.received.map((received) => received.path);
      assert.ok(paths.length > 0 && paths.every((path) => path === '/control'), `only the test merchant's endpoint was reached: ${paths.join(', ')}`);
      const refused = await db()
        .selectFrom('webhook_deliveries')
        .select(['last_error', 'status', 'attempts'])
        .where('merchant_id', '=', publicToUuid('merchant', live.id) ?? '')
        .execute();
      assert.ok(refused.length >= 4);
      assert.ok(refused.every((row) => row.last_error === 'destination_forbidden' && row.status === 'pending' && row.attempts === 1), JSON.stringify(refused));
    } finally {
      await hooks.close();
    }
  });
});

describe('endpoints are scheduled on their own', () => {
  test('one merchant\'s hanging and trickling endpoints do not delay another\'s, and are cut off at the deadline', async () => {
    const hanging = createServer(() => undefined);
    const trickling = createServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'text/plain' });
      const drip = setInterval(() => response.write('.'), 100);
      response.on('close', () => clearInterval(drip));
    });
    const hangingUrl = await listen(hanging);
    const tricklingUrl = await listen(trickling);
    const fast = await startWebhookReceiver();
    try {
      const slowShop = await keel.createMerchant({ name: 'Stuck Shop' });
      const fastShop = await keel.createMerchant({ name: 'Quick Shop' });
      await keel.request('POST', '/v1/webhook_endpoints', { body: { url: `${hangingUrl}/hooks`, events: ['*'] }, secretKey: slowShop.secret_key });
      await keel.request('POST', '/v1/webhook_endpoints', { body: { url: `${tricklingUrl}/hooks`, events: ['*'] }, secretKey: slowShop.secret_key });
      await keel.request('POST', '/v1/webhook_endpoints', { body: { url: fast.url, events: ['*'] }, secretKey: fastShop.secret_key });
      await pay(slowShop.secret_key);
      await pay(fastShop.secret_key);
      await keel.keel.jobs.relay();
      const deadlineMs = 1_500;
      const deliveries = scheduler({ deadlineMs });
      const started = Date.now();
      assert.ok((await deliveries.tick()) >= 3, 'a task per endpoint');
      // The quick shop's two events arrive while the stuck shop's endpoints are still being waited on.
      await fast.waitFor(2, 5_000);
      const slowRows = () => db().selectFrom('webhook_deliveries').select(['attempts', 'last_error', 'last_latency_ms']).where('merchant_id', '=', publicToUuid('merchant', slowShop.id) ?? '').execute();
      assert.ok((await slowRows()).every((row) => row.attempts === 0), 'the stuck endpoints had not finished when the quick one was served');
      assert.ok(Date.now() - started < deadlineMs, 'served before the stuck endpoints\' first deadline');
      await deliveries.drain();
      const rows = await slowRows();
      assert.equal(rows.length, 4);
      // Each stuck endpoint's two events were each tried once, one after the other, and cut off at the deadline.
      for (const row of rows) {
        assert.equal(row.attempts, 1, JSON.stringify(rows));
        assert.equal(row.last_error, 'deadline_exceeded');
        assert.ok((row.last_latency_ms ?? 0) < deadlineMs + 1_000, `cut off at the deadline, headers or body: ${row.last_latency_ms} ms`);
      }
    } finally {
      hanging.closeAllConnections();
      trickling.closeAllConnections();
      hanging.close();
      trickling.close();
      await fast.close();
    }
  });
});

describe('a delivery\'s lease is fenced', () => {
  test('a holder whose lease was taken over cannot write its result', async () => {
    let answered = 0;
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    let arrived: () => void = () => undefined;
    const firstSendArrived = new Promise<void>((resolve) => (arrived = resolve));
    const slow = createServer((request, response) => {
      request.resume();
      answered += 1;
      arrived();
      // The first send is answered only after the lease has been taken over; the second at once.
      if (answered === 1) void held.then(() => response.writeHead(500).end());
      else response.writeHead(200).end();
    });
    const url = await listen(slow);
    try {
      const merchant = await keel.createMerchant({ name: 'Lease Shop' });
      await keel.request('POST', '/v1/webhook_endpoints', { body: { url: `${url}/hooks`, events: ['payment.succeeded'] }, secretKey: merchant.secret_key });
      await pay(merchant.secret_key);
      await keel.keel.jobs.relay();
      const merchantId = publicToUuid('merchant', merchant.id) ?? '';
      const first = scheduler();
      await first.tick();
      await firstSendArrived;
      // The first holder is inside its send; its lease is made to run out, and a second worker takes over.
      await db().updateTable('webhook_deliveries').set({ next_attempt_at: sql<Date>`now()` }).where('merchant_id', '=', merchantId).execute();
      const second = scheduler();
      assert.equal(await second.runOnce(), 1);
      release();
      await first.drain();
      const [row] = await db().selectFrom('webhook_deliveries').select(['status', 'attempts', 'last_status_code', 'lease_token']).where('merchant_id', '=', merchantId).execute();
      assert.deepEqual(row, { status: 'succeeded', attempts: 1, last_status_code: 200, lease_token: null }, 'the second holder\'s result stands; the first one\'s 500 was not written');
      assert.ok(keel.logs.some((line) => line.includes('the lease was taken over')));
    } finally {
      release();
      slow.closeAllConnections();
      slow.close();
    }
  });

  test('a holder whose lease cannot cover a whole send does not send', async () => {
    const hooks = await startWebhookReceiver();
    try {
      const merchant = await keel.createMerchant({ name: 'Short Lease Shop' });
      await keel.request('POST', '/v1/webhook_endpoints', { body: { url: hooks.url, events: ['payment.succeeded'] }, secretKey: merchant.secret_key });
      await pay(merchant.secret_key);
      await keel.keel.jobs.relay();
      // A lease of 10 s cannot hold a send whose deadline is 10 s: the claim is given up unsent.
      assert.equal(await scheduler({ leaseSeconds: 10, deadlineMs: 10_000 }).runOnce(), 0);
      assert.equal(hooks.received.length, 0);
      const [row] = await db().selectFrom('webhook_deliveries').select(['status', 'attempts']).where('merchant_id', '=', publicToUuid('merchant', merchant.id) ?? '').execute();
      assert.deepEqual(row, { status: 'pending', attempts: 0 });
    } finally {
      await hooks.close();
    }
  });
});
