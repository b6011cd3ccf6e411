// Proves load shedding through the API: beyond the concurrency limit, new payments are refused at once with
// 503 overloaded and Retry-After, before any idempotency key or payment is written, while work that finishes a
// payment and reads still get through; with shedding off, nothing is refused.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../config.js';
import { startTestKeel, testCard, uniqueKey, type TestKeel } from '../testing/harness.js';

const fixedLimit = { ...loadConfig({}).shedding.limit, initialLimit: 10, minLimit: 10, maxLimit: 10 };
const body = () => ({ amount: 1000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: testCard(), confirm: true });

async function slowPartner(keel: TestKeel, ms: number): Promise<void> {
  await fetch(`${keel.keel.gatewayUrl}/__sim/latency`, { method: 'POST', body: JSON.stringify({ p50_ms: ms, p99_ms: ms }) });
}

describe('with shedding on', () => {
  let keel: TestKeel;
  before(async () => {
    // A generous partner read timeout: the partner here is slow on purpose, and only the concurrency limit may
    // refuse. The event-loop check is off (0): a sample interval in which a loaded test machine never ran the
    // loop counts as infinite delay (see docs/resilience.md), which would shed everything for that interval.
    keel = await startTestKeel({
      config: {
        shedding: { enabled: true, limit: fixedLimit, maxEventLoopDelayMs: 0, maxHeapShare: 0.99 },
        partnerHttp: { connectTimeoutMs: 500, readTimeoutMs: 5_000, connectionsMax: 64 },
        idempotencyLockTimeoutMs: 10_000,
      },
    });
  });
  after(async () => {
    await keel.close();
  });

  test('new payments beyond their share are shed at once; reads and finishing work still go through', async () => {
    const paid = await keel.request('POST', '/v1/payments', { body: body() });
    assert.equal(paid.status, 200);
    // A request's slot is released in onResponse, just after its answer: wait until the setup payment's is free.
    for (let waited = 0; (keel.keel.services.concurrencyLimit.current?.inFlight ?? 0) > 0 && waited < 500; waited += 1) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.equal(keel.keel.services.concurrencyLimit.current?.inFlight, 0, 'the setup payment released its slot');
    // Slow enough that every create is still in flight when the last one arrives.
    await slowPartner(keel, 1_000);
    try {
      const keysBefore = (await keel.keel.database.db.selectFrom('idempotency_keys').select('id').execute()).length;
      const creates = Array.from({ length: 16 }, () => keel.request('POST', '/v1/payments', { body: body() }));
      await new Promise((resolve) => setTimeout(resolve, 100));
      const read = await keel.request('GET', `/v1/payments/${paid.body.id}`);
      const refund = await keel.request('POST', '/v1/refunds', { body: { payment: paid.body.id, amount: 100 } });
      const results = await Promise.all(creates);
      const shed = results.filter((response) => response.status === 503);
      const served = results.filter((response) => response.status === 200);
      const outcomes = results.map((response) => `${response.status} ${response.body?.error?.code ?? ''}`).join(', ');
      assert.equal(served.length + shed.length, 16, outcomes);
      assert.equal(served.length, 8, `80% of a limit of 10 for new work (one merchant alone: no room kept for others): ${outcomes}`);
      for (const response of shed) {
        assert.equal(response.body.error.code, 'overloaded');
        assert.match(response.body.error.message, /concurrency limit/);
        assert.equal(response.body.error.type, 'api_error');
        assert.equal(response.headers['retry-after'], '1');
      }
      assert.equal(read.status, 200, 'a read is finishing work');
      assert.equal(refund.status, 200, 'a refund is finishing work');
      const keysAfter = (await keel.keel.database.db.selectFrom('idempotency_keys').select('id').execute()).length;
      assert.equal(keysAfter - keysBefore, served.length + 1, 'shed requests wrote nothing');
      const metrics = await keel.request('GET', '/metrics', { secretKey: null });
      assert.match(metrics.body, new RegExp(`keel_shed_requests_total\\{priority="new",reason="concurrency_limit"\\} ${shed.length}`));
    } finally {
      await slowPartner(keel, 0);
    }
  });
});

describe('fair across merchants', () => {
  let keel: TestKeel;
  before(async () => {
    keel = await startTestKeel({
      config: {
        shedding: { enabled: true, limit: { ...fixedLimit, initialLimit: 20, minLimit: 20, maxLimit: 20 }, maxEventLoopDelayMs: 0, maxHeapShare: 0.99 },
        partnerHttp: { connectTimeoutMs: 500, readTimeoutMs: 5_000, connectionsMax: 64 },
        idempotencyLockTimeoutMs: 10_000,
      },
    });
  });
  after(async () => {
    await keel.close();
  });

  test('one merchant\'s burst sheds that merchant: the other keeps being served, and the burster is told it is over its share', async () => {
    const burster = await keel.createMerchant({ name: 'Flash Sale Shop' });
    const other = await keel.createMerchant({ name: 'Quiet Shop' });
    const earlier = await keel.request('POST', '/v1/payments', { body: body(), secretKey: other.secret_key });
    assert.equal(earlier.status, 200);
    for (let waited = 0; (keel.keel.services.concurrencyLimit.current?.inFlight ?? 0) > 0 && waited < 500; waited += 1) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await slowPartner(keel, 1_000);
    try {
      const limiter = keel.keel.services.concurrencyLimit.current;
      const inFlightReaches = async (count: number) => {
        for (let turn = 0; (limiter?.inFlight ?? 0) < count && turn < 10_000; turn += 1) await new Promise((resolve) => setImmediate(resolve));
        assert.ok((limiter?.inFlight ?? 0) >= count, `in flight ${limiter?.inFlight} of ${count}`);
      };
      const burst = Array.from({ length: 40 }, () => keel.request('POST', '/v1/payments', { body: body(), secretKey: burster.secret_key }));
      // The burster's admitted payments are all in flight at the slow partner before the quiet shop comes.
      await inFlightReaches(14);
      const quiet = [keel.request('POST', '/v1/payments', { body: body(), secretKey: other.secret_key })];
      await inFlightReaches(15);
      // Below the ceiling but inside the headroom: the burster, over its share, is refused; the quiet shop is not.
      const secondWave = await Promise.all(Array.from({ length: 3 }, () => keel.request('POST', '/v1/payments', { body: body(), secretKey: burster.secret_key })));
      quiet.push(
        keel.request('POST', '/v1/payments', { body: body(), secretKey: other.secret_key }),
        ...Array.from({ length: 3 }, () => keel.request('GET', `/v1/payments/${earlier.body.id}`, { secretKey: other.secret_key })),
      );
      const quietResults = await Promise.all(quiet);
      const burstResults = await Promise.all(burst);
      const describe = (results: readonly { status: number; body: { error?: { code: string } } }[]) => results.map((response) => `${response.status} ${response.body?.error?.code ?? ''}`).join(', ');
      assert.deepEqual(quietResults.map((response) => response.status), [200, 200, 200, 200, 200], describe(quietResults));
      const burstServed = burstResults.filter((response) => response.status === 200).length;
      assert.equal(burstServed, 14, `new work's ceiling of 16 less the headroom: ${describe(burstResults)}`);
      // The quiet shop was seen a moment ago: the burster's refusals are over its share, or overloaded at the ceiling.
      assert.ok(burstResults.every((response) => response.status === 200 || ['overloaded', 'rate_limited'].includes(response.body.error.code)), describe(burstResults));
      for (const response of secondWave) {
        assert.equal(response.status, 429, describe(secondWave));
        assert.equal(response.body.error.code, 'rate_limited');
        assert.match(response.body.error.message, /share/);
        assert.equal(response.headers['retry-after'], '1');
      }
    } finally {
      await slowPartner(keel, 0);
    }
  });
});

describe('under event-loop pressure', () => {
  let keel: TestKeel;
  before(async () => {
    keel = await startTestKeel({ config: { shedding: { enabled: true, limit: { ...fixedLimit, initialLimit: 100, maxLimit: 100 }, maxEventLoopDelayMs: 20, maxHeapShare: 0.99 } } });
  });
  after(async () => {
    await keel.close();
  });

  test('new payments are shed while the event loop lags; finishing work still goes through', async () => {
    // A busy machine lags on its own; the setup payment waits for a calm moment.
    let paid = await keel.request('POST', '/v1/payments', { body: body() });
    for (let attempt = 0; paid.status === 503 && attempt < 50; attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      paid = await keel.request('POST', '/v1/payments', { body: body() });
    }
    assert.equal(paid.status, 200);
    // Hold the event loop for a while, in slices, so the pressure sampler sees the delay.
    for (let slice = 0; slice < 8; slice += 1) {
      const until = performance.now() + 80;
      while (performance.now() < until) {
        // busy: this is the lag under test
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    const create = await keel.request('POST', '/v1/payments', { body: body() });
    const read = await keel.request('GET', `/v1/payments/${paid.body.id}`);
    assert.equal(create.status, 503, JSON.stringify(create.body));
    assert.equal(create.body.error.code, 'overloaded');
    assert.equal(read.status, 200);
  });
});

describe('with shedding off', () => {
  let keel: TestKeel;
  before(async () => {
    keel = await startTestKeel({ config: { shedding: { enabled: false, limit: fixedLimit, maxEventLoopDelayMs: 10_000, maxHeapShare: 0.99 } } });
  });
  after(async () => {
    await keel.close();
  });

  test('nothing is shed', async () => {
    await slowPartner(keel, 200);
    try {
      const results = await Promise.all(Array.from({ length: 16 }, () => keel.request('POST', '/v1/payments', { body: body() })));
      assert.deepEqual(new Set(results.map((response) => response.status)), new Set([200]));
    } finally {
      await slowPartner(keel, 0);
    }
  });
});
