// Proves the checkout queue through the API and the hosted page: tickets wait in order past the configured
// capacity and are admitted as time passes; a payment needs an admitted ticket of its merchant and gets the
// priority of finishing work; the page answers the waiting room with a signed cookie that cannot be forged or
// carried to another session; lapsed admissions expire; two API instances on one Redis share one order.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { loadConfig } from '../config.js';
import { startTestKeel, testCard, testRedisUrl, uniqueKey, type TestKeel, type TestResponse } from '../testing/harness.js';
import { CheckoutQueue } from './checkout-queue.js';
import { RedisQueueStore } from './store.js';

const base = loadConfig({});
const onAt = (capacityPerS: number) => ({ checkoutQueue: { mode: 'on' as const, capacityPerS, admissionTtlS: 300 } });

/** A clock the tests move (only forward, across tests): the queue admits, refills and lapses by it. */
let testNow = Date.now();
function clockOf(keel: TestKeel): { pass(ms: number): Promise<void> } {
  keel.keel.services.checkoutQueue.useClock(() => testNow);
  return {
    async pass(ms: number) {
      testNow += ms;
      await keel.keel.services.checkoutQueue.tick();
    },
  };
}

const payment = (ticket: string | undefined, orderId = uniqueKey('ord')) => ({
  amount: 12000,
  currency: 'KRW',
  order_id: orderId,
  confirm: true,
  payment_method: testCard(),
  ...(ticket === undefined ? {} : { queue_ticket: ticket }),
});

describe('queue tickets through the API', () => {
  let keel: TestKeel;
  before(async () => {
    keel = await startTestKeel({ config: onAt(2) });
  });
  after(async () => keel.close());

  test('past the capacity tickets wait in order, move as admissions happen, and only an admitted one pays', async () => {
    const clock = clockOf(keel);
    const tickets: TestResponse[] = [];
    for (let index = 0; index < 5; index += 1) tickets.push(await keel.request('POST', '/v1/queue_tickets', { body: {} }));
    assert.deepEqual(tickets.map((ticket) => ticket.status), [200, 200, 200, 200, 200]);
    assert.deepEqual(tickets.map((ticket) => [ticket.body.status, ticket.body.position]), [['admitted', 0], ['admitted', 0], ['waiting', 1], ['waiting', 2], ['waiting', 3]]);
    const third = tickets[2]?.body;
    assert.match(third.id, /^qt_[0-9A-Z]{26}$/);
    assert.equal(third.object, 'queue_ticket');
    assert.equal(third.country, 'KR');
    assert.equal(third.estimated_wait_s, 0.5, 'one place at two admissions a second');
    assert.equal(tickets[4]?.body.estimated_wait_s, 1.5);

    const before = await keel.countAllRows();
    const early = await keel.request('POST', '/v1/payments', { body: payment(third.id) });
    assert.equal(early.status, 409);
    assert.equal(early.body.error.code, 'queue_ticket_not_admitted');
    assert.equal(early.body.error.param, 'queue_ticket');
    assert.match(early.body.error.message, /still waiting/);
    assert.deepEqual(await keel.countAllRows(), before, 'a refused payment writes nothing');

    await clock.pass(500);
    const now = await keel.request('GET', `/v1/queue_tickets/${third.id}`);
    assert.deepEqual([now.body.status, now.body.position, now.body.estimated_wait_s], ['admitted', 0, 0]);
    assert.equal(Date.parse(now.body.admitted_at) - Date.parse(now.body.joined_at), 500);
    assert.equal((await keel.request('GET', `/v1/queue_tickets/${tickets[3]?.body.id}`)).body.position, 1);

    const orderId = uniqueKey('ord');
    const paid = await keel.request('POST', '/v1/payments', { body: payment(third.id, orderId) });
    assert.equal(paid.status, 200, JSON.stringify(paid.body));
    assert.equal(paid.body.status, 'succeeded');
    // The same order again (a retry under a new key) may use it; another order may not.
    const retried = await keel.request('POST', '/v1/payments', { body: payment(third.id, orderId) });
    assert.equal(retried.body.error?.code, 'order_id_taken', 'the ticket let the retry through to the order check');
    const other = await keel.request('POST', '/v1/payments', { body: payment(third.id) });
    assert.equal(other.status, 409);
    assert.match(other.body.error.message, /another order/);

    const missing = await keel.request('POST', '/v1/payments', { body: payment('qt_00000000000000000000000000') });
    assert.equal(missing.status, 404);
    assert.equal(missing.body.error.param, 'queue_ticket');
    const stranger = await keel.createMerchant({ name: 'Other Shop' });
    const theirs = await keel.request('GET', `/v1/queue_tickets/${third.id}`, { secretKey: stranger.secret_key });
    assert.equal(theirs.status, 404);
    const borrowed = await keel.request('POST', '/v1/payments', { body: payment(tickets[0]?.body.id), secretKey: stranger.secret_key });
    assert.equal(borrowed.status, 404, 'another merchant\'s ticket does not exist for this one');
    const owners = await keel.request('POST', '/v1/payments', { body: payment(tickets[0]?.body.id) });
    assert.equal(owners.status, 200, `another merchant's try did not use the ticket up: ${JSON.stringify(owners.body)}`);
    const badCustomer = await keel.request('POST', '/v1/queue_tickets', { body: { customer: 'cus_00000000000000000000000000' } });
    assert.equal(badCustomer.status, 404);
    assert.equal(badCustomer.body.error.param, 'customer');
  });

  test('the queue starting and stopping is written on the open incident', async () => {
    const clock = clockOf(keel);
    // Whoever the earlier test left waiting is admitted, then the queue stops after its quiet minute.
    await clock.pass(120_000);
    await clock.pass(60_000);
    const admin = (method: 'GET' | 'POST', path: string, body?: unknown) =>
      keel.request(method, path, { secretKey: keel.keel.services.adminToken, idempotencyKey: null, ...(body === undefined ? {} : { body }) });
    const incident = (await admin('POST', '/admin/incidents', { title: 'Flash sale', severity: 'sev2' })).body;
    const systemOf = async () => ((await admin('GET', `/admin/incidents/${incident.id}/timeline`)).body.data as { kind: string; text: string }[]).filter((entry) => entry.kind === 'system').map((entry) => entry.text);
    const landed = async (count: number) => {
      // The entries are written after the signal, off its path: wait for them to land.
      for (let tries = 0; (await systemOf()).length < count && tries < 100; tries += 1) await new Promise((resolve) => setImmediate(resolve));
      return systemOf();
    };
    for (let index = 0; index < 3; index += 1) await keel.request('POST', '/v1/queue_tickets', { body: {} });
    assert.deepEqual(await landed(1), ['checkout queue started for KR']);
    await clock.pass(1_000);
    await clock.pass(60_000);
    assert.deepEqual(await landed(2), ['checkout queue started for KR', 'checkout queue stopped for KR']);
  });

  test('an admission unused for KEEL_QUEUE_ADMISSION_TTL_S lapses: expired, counted, and refused for payment', async () => {
    const clock = clockOf(keel);
    await clock.pass(10_000);
    const ticket = (await keel.request('POST', '/v1/queue_tickets', { body: {} })).body;
    assert.equal(ticket.status, 'admitted');
    await clock.pass(299_000);
    assert.equal((await keel.request('GET', `/v1/queue_tickets/${ticket.id}`)).body.status, 'admitted');
    await clock.pass(1_000);
    const lapsed = (await keel.request('GET', `/v1/queue_tickets/${ticket.id}`)).body;
    assert.deepEqual([lapsed.status, lapsed.position, lapsed.estimated_wait_s], ['expired', null, null]);
    const refused = await keel.request('POST', '/v1/payments', { body: payment(ticket.id) });
    assert.equal(refused.status, 409);
    assert.match(refused.body.error.message, /lapsed/);
    const metrics = await keel.keel.services.deps.metrics.registry.getSingleMetricAsString('keel_checkout_queue_lapsed_total');
    assert.match(metrics, /keel_checkout_queue_lapsed_total\{country="KR"\} [1-9]/);
  });
});

describe('a payment with an admitted ticket is finishing work', () => {
  let keel: TestKeel;
  before(async () => {
    keel = await startTestKeel({
      config: { ...onAt(1_000), shedding: { enabled: true, limit: { ...base.shedding.limit, initialLimit: 10, minLimit: 10, maxLimit: 10 }, maxEventLoopDelayMs: 0, maxHeapShare: 0.99 } },
    });
  });
  after(async () => keel.close());

  test('with new work at its share of the limit, a payment without a ticket is shed and one with an admitted ticket goes through', async () => {
    const ticket = (await keel.request('POST', '/v1/queue_tickets', { body: {} })).body;
    assert.equal(ticket.status, 'admitted');
    const limiter = keel.keel.services.concurrencyLimit.current;
    assert.ok(limiter !== undefined);
    // Hold the new-work share (8 of 10) as payments in flight would.
    const held = Array.from({ length: 8 }, () => limiter.tryAcquire('new'));
    assert.ok(held.every(Boolean));
    try {
      const plain = await keel.request('POST', '/v1/payments', { body: payment(undefined) });
      assert.equal(plain.status, 503);
      assert.equal(plain.body.error.code, 'overloaded');
      const waitingTicket = await keel.request('POST', '/v1/payments', { body: payment('qt_00000000000000000000000000') });
      assert.equal(waitingTicket.status, 503, 'an unknown ticket is new work like any other');
      const queued = await keel.request('POST', '/v1/payments', { body: payment(ticket.id) });
      assert.equal(queued.status, 200, JSON.stringify(queued.body));
      assert.equal(queued.body.status, 'succeeded');
    } finally {
      for (let index = 0; index < 8; index += 1) limiter.release(1, false);
    }
  });
});

function cookieOf(response: TestResponse): string {
  const header = response.headers['set-cookie'];
  const value = Array.isArray(header) ? header[0] : header;
  assert.ok(typeof value === 'string', 'a keel_queue cookie is set');
  return value;
}

const cookiePair = (setCookie: string) => setCookie.split(';')[0] ?? '';

describe('the hosted page\'s waiting room', () => {
  let keel: TestKeel;
  before(async () => {
    keel = await startTestKeel({ config: onAt(1) });
  });
  after(async () => keel.close());

  async function newSession() {
    const customer = (await keel.request('POST', '/v1/brandpay/customers', { body: { customer_key: uniqueKey('shopper') } })).body;
    const session = await keel.request('POST', '/v1/brandpay/checkout_sessions', {
      body: { customer: customer.id, amount: 30000, currency: 'KRW', order_id: uniqueKey('ord'), success_url: 'https://shop.example/ok', fail_url: 'https://shop.example/fail' },
    });
    return session.body.id as string;
  }
  const visit = (session: string, path = '', cookie?: string, body?: unknown) =>
    keel.request(body === undefined ? 'GET' : 'POST', `/pay/${session}${path}`, { secretKey: null, idempotencyKey: null, ...(cookie === undefined ? {} : { headers: { cookie } }), ...(body === undefined ? {} : { body }) });

  test('the first shopper gets the page; the next waits with a signed cookie, keeps their place, and is let in as admissions happen', async () => {
    const clock = clockOf(keel);
    const first = await newSession();
    const served = await visit(first);
    assert.equal(served.status, 200);
    assert.match(String(served.body), /id="pin"/, 'the pay page itself');
    const firstCookie = cookiePair(cookieOf(served));

    const second = await newSession();
    const room = await visit(second);
    assert.equal(room.status, 200);
    const html = String(room.body);
    assert.match(html, /<meta http-equiv="refresh" content="1">/);
    assert.match(html, /id="queue-position">1</);
    assert.doesNotMatch(html, /id="pin"/);
    assert.equal(room.headers['content-security-policy'], (await visit(first, '', firstCookie)).headers['content-security-policy']);
    assert.equal(room.headers['x-frame-options'], 'DENY');
    const setCookie = cookieOf(room);
    assert.match(setCookie, new RegExp(`^keel_queue=[^;]+; Max-Age=3600; Path=/pay/${second}; HttpOnly; SameSite=Lax$`));
    const cookie = cookiePair(setCookie);

    const polled = await visit(second, '/queue', cookie);
    assert.deepEqual({ ...polled.body, joined_at: undefined }, { object: 'queue_position', status: 'waiting', position: 1, estimated_wait_s: 1, joined_at: undefined, admitted_at: null });
    assert.equal(polled.headers['set-cookie'], undefined, 'the same ticket: no new cookie');

    // Waiting shoppers cannot skip ahead through the page's calls: approve answers their wait.
    const skip = await visit(second, '/approve', cookie, { payment_method: 'pm_00000000000000000000000000', pin: '135790' });
    assert.equal(skip.status, 503);
    assert.equal(skip.body.error.code, 'overloaded');
    assert.equal(skip.headers['retry-after'], '1');

    // A forged signature, or the first session's genuine cookie carried here, is no cookie: a new place at the back.
    const [name, value] = cookie.split('=') as [string, string];
    const forged = await visit(second, '/queue', `${name}=${value.slice(0, -2)}xx`);
    assert.equal(forged.body.position, 2);
    const carried = await visit(second, '/queue', `keel_queue=${firstCookie.split('=')[1]}`);
    assert.equal(carried.body.position, 3);
    assert.notEqual(cookiePair(cookieOf(carried)), cookie);

    await clock.pass(1_000);
    const admitted = await visit(second, '', cookie);
    assert.match(String(admitted.body), /id="pin"/, 'admitted: the pay page');
    const inside = (await visit(second, '/queue', cookie)).body;
    assert.deepEqual([inside.status, inside.position, inside.estimated_wait_s], ['admitted', 0, 0]);
    assert.equal(Date.parse(inside.admitted_at) - Date.parse(inside.joined_at), 1_000);
    // Once in checkout the shopper is never queued again, however long they take.
    await clock.pass(600_000);
    assert.match(String((await visit(second, '', cookie)).body), /id="pin"/);
    const methods = await visit(second, '/payment_methods', cookie, testCard());
    assert.equal(methods.status, 201, JSON.stringify(methods.body));
  });
});

const redisUrl = testRedisUrl();
describe('two API instances on one Redis', { skip: redisUrl === undefined ? 'no KEEL_TEST_REDIS_URL' : false }, () => {
  const namespace = `queue_${randomBytes(4).toString('hex')}`;
  const shared = { ...onAt(5), redisUrl, eventsNamespace: namespace };
  let first: TestKeel;
  let second: TestKeel;
  before(async () => {
    first = await startTestKeel({ config: shared });
    second = await startTestKeel({ config: shared });
  });
  after(async () => {
    await first.close();
    await second.close();
  });

  test('concurrent arrivals at both get distinct places in one order, are admitted in that order, and keep them across a restart', async () => {
    const t0 = Date.now() + 60_000;
    let now = t0;
    for (const keel of [first, second]) keel.keel.services.checkoutQueue.useClock(() => now);
    const arrivals = await Promise.all(Array.from({ length: 40 }, (_, index) => (index % 2 === 0 ? first : second).request('POST', '/v1/queue_tickets', { body: {} })));
    const waiting = arrivals.map((response) => response.body).filter((ticket) => ticket.status === 'waiting');
    assert.equal(arrivals.filter((response) => response.body.status === 'admitted').length, 5, 'one second of capacity at once');
    assert.deepEqual(waiting.map((ticket) => ticket.position).sort((a, b) => a - b), Array.from({ length: 35 }, (_, index) => index + 1), 'every place once');
    const byPlace = [...waiting].sort((a, b) => a.position - b.position);

    // A restart: a new queue on a new connection sees every place as it was.
    const connection = new Redis(redisUrl ?? '');
    try {
      const restarted = new CheckoutQueue({
        config: shared.checkoutQueue,
        store: new RedisQueueStore(connection, namespace),
        meter: undefined,
        instance: 'restarted',
        registry: new Registry(),
        signals: first.keel.services.deps.metrics.signals,
        cipher: first.keel.services.deps.cipher,
        logger: first.keel.logger,
        now: () => now,
      });
      for (const ticket of byPlace.slice(0, 5)) assert.equal((await restarted.status(ticket.id))?.position, ticket.position);
    } finally {
      connection.disconnect();
    }

    const admittedAt = new Map<string, number>();
    for (let step = 1; admittedAt.size < waiting.length && step < 100; step += 1) {
      now = t0 + step * 200;
      await (step % 2 === 0 ? first : second).keel.services.checkoutQueue.tick();
      for (const ticket of byPlace) {
        if (admittedAt.has(ticket.id)) continue;
        const owner = arrivals.findIndex((response) => response.body.id === ticket.id) % 2 === 0 ? first : second;
        const seen = await owner.request('GET', `/v1/queue_tickets/${ticket.id}`);
        if (seen.body.status === 'admitted') admittedAt.set(ticket.id, Date.parse(seen.body.admitted_at));
      }
    }
    const order = byPlace.map((ticket) => admittedAt.get(ticket.id) ?? Infinity);
    assert.deepEqual([...order].sort((a, b) => a - b), order, 'admitted in the order of their places');
    assert.ok(order.every(Number.isFinite), 'everyone was admitted');
    // Five a second: 35 shoppers take seven seconds.
    assert.equal((order.at(-1) ?? 0) - t0, 7_000);
  });
});
