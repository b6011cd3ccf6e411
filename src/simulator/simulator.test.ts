// Proves the benchmark gateway behaves like a partner worth testing against: the seeded lognormal model hits
// its percentiles, the concurrency cap answers 429, faults hit only their country, the partner-side
// idempotency replays and refuses as Toss and Stripe do, inquiries find charges, and the settlement report
// carries fees.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { createRandom, sampleLatencyMs } from './latency.js';
import { startSimulator, type Simulator } from './server.js';

let sim: Simulator;
before(async () => {
  sim = await startSimulator({ port: 0, concurrencyMax: 4, ambiguousDelayMs: 50 });
});
after(async () => {
  await sim.close();
});

const tossAuth = `Basic ${Buffer.from('test_sk_sim:').toString('base64')}`;

async function toss(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${sim.url}${path}`, {
    method,
    headers: { authorization: tossAuth, 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function billingKey(card = '4242424242424242'): Promise<string> {
  const issued = await toss('POST', '/v1/billing/authorizations/card', { customerKey: 'cust_1', cardNumber: card, cardExpirationYear: '30', cardExpirationMonth: '12' });
  assert.equal(issued.status, 200);
  return String(issued.body['billingKey']);
}

describe('latency model', () => {
  test('seeded lognormal draws land on the configured p50 and p99', () => {
    const random = createRandom(7);
    const samples = Array.from({ length: 20_000 }, () => sampleLatencyMs({ p50Ms: 200, p99Ms: 1000 }, random)).sort((a, b) => a - b);
    const p50 = samples[10_000] ?? 0;
    const p99 = samples[19_800] ?? 0;
    assert.ok(Math.abs(p50 - 200) / 200 < 0.08, `p50 ${p50}`);
    assert.ok(Math.abs(p99 - 1000) / 1000 < 0.15, `p99 ${p99}`);
    const again = createRandom(7);
    assert.equal(sampleLatencyMs({ p50Ms: 200, p99Ms: 1000 }, again), sampleLatencyMs({ p50Ms: 200, p99Ms: 1000 }, createRandom(7)));
  });
});

describe('Toss dialect', () => {
  test('billing charge, inquiry by order id, partial cancel, settlement with fees', async () => {
    const key = await billingKey();
    const charged = await toss('POST', `/v1/billing/${key}`, { customerKey: 'cust_1', amount: 10000, orderId: 'sim-order-1', orderName: 'x' });
    assert.equal(charged.status, 200);
    assert.equal(charged.body['status'], 'DONE');
    const found = await toss('GET', '/v1/payments/orders/sim-order-1');
    assert.equal(found.body['paymentKey'], charged.body['paymentKey']);
    const canceled = await toss('POST', `/v1/payments/${String(charged.body['paymentKey'])}/cancel`, { cancelReason: 'test', cancelAmount: 4000 });
    assert.equal(canceled.body['status'], 'PARTIAL_CANCELED');
    assert.equal(canceled.body['balanceAmount'], 6000);
    const tooMuch = await toss('POST', `/v1/payments/${String(charged.body['paymentKey'])}/cancel`, { cancelReason: 'test', cancelAmount: 7000 });
    assert.equal(tooMuch.status, 400);
    assert.equal(tooMuch.body['code'], 'NOT_CANCELABLE_AMOUNT');
    const today = new Date().toISOString().slice(0, 10);
    const report = await fetch(`${sim.url}/v1/settlements?startDate=${today}&endDate=${today}`, { headers: { authorization: tossAuth } });
    const rows = (await report.json()) as { orderId: string; amount: number; fees: { fee: number }[]; payOutAmount: number }[];
    const sale = rows.find((row) => row.orderId === 'sim-order-1' && row.amount > 0);
    assert.equal(sale?.fees[0]?.fee, 250);
    assert.equal(sale?.payOutAmount, 10000 - 250 - 25);
    assert.ok(rows.some((row) => row.orderId === 'sim-order-1' && row.amount === -4000));
  });

  test('test cards decline with Toss codes', async () => {
    const declined = await toss('POST', `/v1/billing/${await billingKey('4000000000009995')}`, { customerKey: 'c', amount: 1000, orderId: 'sim-decline', orderName: 'x' });
    assert.equal(declined.status, 400);
    assert.equal(declined.body['code'], 'REJECT_CARD_PAYMENT');
  });

  test('the same Idempotency-Key replays; another body under it is refused', async () => {
    const key = await billingKey();
    const headers = { 'idempotency-key': 'sim-idem-1' };
    const first = await toss('POST', `/v1/billing/${key}`, { customerKey: 'c', amount: 1000, orderId: 'sim-idem', orderName: 'x' }, headers);
    const second = await toss('POST', `/v1/billing/${key}`, { customerKey: 'c', amount: 1000, orderId: 'sim-idem', orderName: 'x' }, headers);
    assert.deepEqual(second.body, first.body);
    const changed = await toss('POST', `/v1/billing/${key}`, { customerKey: 'c', amount: 2000, orderId: 'sim-idem', orderName: 'x' }, headers);
    assert.equal(changed.status, 422);
    const charges = (await (await fetch(`${sim.url}/__sim/charges?order_id=sim-idem`)).json()) as { data: unknown[] };
    assert.equal(charges.data.length, 1);
  });

  test('requests without credentials are 401', async () => {
    const response = await fetch(`${sim.url}/v1/payments/orders/x`);
    assert.equal(response.status, 401);
  });
});

describe('faults and capacity', () => {
  test('an outage for one country leaves another country served', async () => {
    await fetch(`${sim.url}/__sim/faults`, { method: 'POST', body: JSON.stringify({ country: 'JP', mode: 'outage', duration_s: 5 }) });
    try {
      const jp = await toss('GET', '/v1/payments/orders/none', undefined, { 'keel-country': 'JP' });
      const kr = await toss('GET', '/v1/payments/orders/none', undefined, { 'keel-country': 'KR' });
      assert.equal(jp.status, 503);
      assert.equal(kr.status, 404);
    } finally {
      await fetch(`${sim.url}/__sim/faults`, { method: 'DELETE' });
    }
  });

  test('beyond the concurrency cap the gateway answers 429 at once', async () => {
    await fetch(`${sim.url}/__sim/latency`, { method: 'POST', body: JSON.stringify({ p50_ms: 300, p99_ms: 300 }) });
    try {
      const statuses = await Promise.all(Array.from({ length: 12 }, () => toss('GET', '/v1/payments/orders/none').then((response) => response.status)));
      assert.ok(statuses.includes(429), `statuses ${statuses.join(',')}`);
      assert.ok(statuses.includes(404));
      const limited = await toss('GET', '/v1/payments/orders/none').catch(() => undefined);
      assert.ok(limited !== undefined);
    } finally {
      await fetch(`${sim.url}/__sim/latency`, { method: 'POST', body: JSON.stringify({ p50_ms: 0, p99_ms: 0 }) });
    }
  });

  test('bad fault and latency settings are refused', async () => {
    assert.equal((await fetch(`${sim.url}/__sim/faults`, { method: 'POST', body: JSON.stringify({ mode: 'meltdown' }) })).status, 400);
    assert.equal((await fetch(`${sim.url}/__sim/latency`, { method: 'POST', body: JSON.stringify({ p50_ms: 500, p99_ms: 100 }) })).status, 400);
  });
});

describe('Stripe dialect', () => {
  const stripe = async (path: string, form: string, key?: string) => {
    const response = await fetch(`${sim.url}${path}`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk_test_sim', 'content-type': 'application/x-www-form-urlencoded', ...(key === undefined ? {} : { 'idempotency-key': key }) },
      body: form,
    });
    return { status: response.status, body: (await response.json()) as Record<string, any> }; // eslint-disable-line @typescript-eslint/no-explicit-any
  };

  test('manual capture, partial refund and search by metadata', async () => {
    const created = await stripe(
      '/v1/payment_intents',
      'amount=5000&currency=usd&confirm=true&capture_method=manual&payment_method_data[type]=card&payment_method_data[card][number]=4242424242424242&metadata[keel_attempt]=att_sim',
    );
    assert.equal(created.body['status'], 'requires_capture');
    const captured = await stripe(`/v1/payment_intents/${created.body['id']}/capture`, 'amount_to_capture=4000');
    assert.equal(captured.body['status'], 'succeeded');
    assert.equal(captured.body['amount_received'], 4000);
    const refund = await stripe('/v1/refunds', `payment_intent=${created.body['id']}&amount=1000`);
    assert.equal(refund.body['status'], 'succeeded');
    const search = await fetch(`${sim.url}/v1/payment_intents/search?query=${encodeURIComponent("metadata['keel_attempt']:'att_sim'")}`, {
      headers: { authorization: 'Bearer sk_test_sim' },
    });
    const found = (await search.json()) as { data: { id: string }[] };
    assert.deepEqual(found.data.map((item) => item.id), [created.body['id']]);
  });

  test('balance transactions: charges less fees and refunds, newest first, paged, sources expanded', async () => {
    const key = 'sk_test_balance';
    const charge = (amount: number) =>
      fetch(`${sim.url}/v1/payment_intents`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: `amount=${amount}&currency=usd&confirm=true&payment_method_data[type]=card&payment_method_data[card][number]=4242424242424242`,
      }).then((response) => response.json() as Promise<{ id: string }>);
    const first = await charge(1000);
    await charge(2000);
    await fetch(`${sim.url}/v1/refunds`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/x-www-form-urlencoded' }, body: `payment_intent=${first.id}&amount=300` });
    const list = async (query: string) => {
      const response = await fetch(`${sim.url}/v1/balance_transactions?${query}`, { headers: { authorization: `Bearer ${key}` } });
      return (await response.json()) as { data: { id: string; type: string; amount: number; fee: number; net: number; source: unknown }[]; has_more: boolean };
    };
    const page = await list('limit=2&expand[]=data.source');
    assert.equal(page.has_more, true);
    const rest = await list(`limit=2&starting_after=${page.data[1]?.id}`);
    assert.equal(rest.has_more, false);
    const all = [...page.data, ...rest.data];
    assert.deepEqual(all.map((row) => [row.type, row.amount, row.fee, row.net]).sort(), [
      ['charge', 1000, 59, 941],
      ['charge', 2000, 88, 1912],
      ['refund', -300, 0, -300],
    ]);
    assert.deepEqual((page.data[0]?.source as { payment_intent?: string }).payment_intent?.startsWith('pi_'), true);
    assert.equal(typeof rest.data[0]?.source, 'string', 'unexpanded, the source is an id');
    assert.equal((await list('type=refund')).data.length, 1);
    assert.equal((await list('created[gte]=4102444800')).data.length, 0, 'nothing after 2100-01-01');
  });

  test('a decline is 402 card_error with the decline code', async () => {
    const declined = await stripe('/v1/payment_intents', 'amount=5000&currency=usd&confirm=true&payment_method_data[type]=card&payment_method_data[card][number]=4000000000000002');
    assert.equal(declined.status, 402);
    assert.equal(declined.body['error'].type, 'card_error');
    assert.equal(declined.body['error'].decline_code, 'card_declined');
  });
});

describe('a partner as real partners behave', () => {
  const stripeCall = async (method: 'GET' | 'POST', path: string, form?: string) => {
    const response = await fetch(`${sim.url}${path}`, {
      method,
      headers: { authorization: 'Bearer sk_test_lag', 'content-type': 'application/x-www-form-urlencoded' },
      ...(form === undefined ? {} : { body: form }),
    });
    return { status: response.status, body: (await response.json()) as Record<string, any> }; // eslint-disable-line @typescript-eslint/no-explicit-any
  };
  const consistency = (lagMs: number | null) =>
    fetch(`${sim.url}/__sim/consistency`, { method: lagMs === null ? 'DELETE' : 'POST', ...(lagMs === null ? {} : { body: JSON.stringify({ inquiry_lag_ms: lagMs }) }) });
  const charges = async (orderId: string) => ((await (await fetch(`${sim.url}/__sim/charges?order_id=${orderId}`)).json()) as { data: { status: string; captured_amount: number }[] }).data;

  test('a charge is made on arrival: a client that gives up before the answer still leaves it behind', async () => {
    const key = await billingKey();
    await fetch(`${sim.url}/__sim/latency`, { method: 'POST', body: JSON.stringify({ p50_ms: 1_500, p99_ms: 1_500 }) });
    try {
      const gaveUp = await fetch(`${sim.url}/v1/billing/${key}`, {
        method: 'POST',
        headers: { authorization: tossAuth, 'content-type': 'application/json' },
        body: JSON.stringify({ customerKey: 'c', amount: 1000, orderId: 'sim-arrival', orderName: 'x' }),
        signal: AbortSignal.timeout(200),
      }).then(() => 'answered', () => 'gave up');
      assert.equal(gaveUp, 'gave up');
      assert.deepEqual((await charges('sim-arrival')).map((charge) => charge.status), ['captured'], 'the partner holds the charge the client never heard of');
    } finally {
      await fetch(`${sim.url}/__sim/latency`, { method: 'POST', body: JSON.stringify({ p50_ms: 0, p99_ms: 0 }) });
    }
  });

  test('with inquiry lag, inquiries answer 404 or the earlier state until the lag has passed; the ground truth never lags', async () => {
    await consistency(400);
    try {
      const key = await billingKey();
      const charged = await toss('POST', `/v1/billing/${key}`, { customerKey: 'c', amount: 1000, orderId: 'sim-lag', orderName: 'x' });
      assert.equal(charged.status, 200);
      assert.equal((await toss('GET', '/v1/payments/orders/sim-lag')).status, 404, 'the order is not visible yet');
      assert.equal((await toss('GET', `/v1/payments/${String(charged.body['paymentKey'])}`)).status, 404, 'nor by its payment key');
      assert.equal((await charges('sim-lag')).length, 1, 'the partner holds it all along');

      const intent = await stripeCall('POST', '/v1/payment_intents', 'amount=5000&currency=usd&confirm=true&capture_method=manual&payment_method_data[card][number]=4242424242424242&metadata[keel_attempt]=att_lag');
      assert.equal(intent.body['status'], 'requires_capture');
      const search = () => stripeCall('GET', `/v1/payment_intents/search?query=${encodeURIComponent("metadata['keel_attempt']:'att_lag'")}`);
      assert.deepEqual((await search()).body['data'], [], 'search lags');
      await sleep(450);
      assert.equal((await toss('GET', '/v1/payments/orders/sim-lag')).status, 200, 'visible once the lag has passed');
      const captured = await stripeCall('POST', `/v1/payment_intents/${intent.body['id']}/capture`, '');
      assert.equal(captured.body['status'], 'succeeded', 'writes act on the true state');
      assert.equal((await stripeCall('GET', `/v1/payment_intents/${intent.body['id']}`)).body['status'], 'requires_capture', 'a retrieval shows the state before the capture');
      await stripeCall('POST', '/v1/refunds', `payment_intent=${intent.body['id']}&amount=1000`);
      assert.deepEqual((await stripeCall('GET', `/v1/refunds?payment_intent=${intent.body['id']}`)).body['data'], [], 'the refund is not listed yet');
      await sleep(450);
      assert.equal((await stripeCall('GET', `/v1/payment_intents/${intent.body['id']}`)).body['status'], 'succeeded');
      assert.equal(((await stripeCall('GET', `/v1/refunds?payment_intent=${intent.body['id']}`)).body['data'] as unknown[]).length, 1);
    } finally {
      await consistency(null);
    }
    assert.equal((await fetch(`${sim.url}/__sim/consistency`, { method: 'POST', body: JSON.stringify({ inquiry_lag_ms: -1 }) })).status, 400);
  });

  test('the 3-D Secure card leaves a Stripe intent in requires_action, holding nothing, until it is canceled', async () => {
    const intent = await stripeCall('POST', '/v1/payment_intents', 'amount=5000&currency=usd&confirm=true&payment_method_data[card][number]=4000002760003184&metadata[order_id]=sim-3ds');
    assert.equal(intent.status, 200);
    assert.equal(intent.body['status'], 'requires_action');
    assert.equal(intent.body['amount_received'], 0);
    const canceled = await stripeCall('POST', `/v1/payment_intents/${intent.body['id']}/cancel`, 'cancellation_reason=abandoned');
    assert.equal(canceled.body['status'], 'canceled');
    assert.deepEqual((await charges('sim-3ds')).map((charge) => [charge.status, charge.captured_amount]), [['canceled', 0]]);
  });
});
