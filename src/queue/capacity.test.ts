// The measured checkout capacity: no bound while checkout is healthy, 80% of its throughput once it saturates (shed,
// or twice its quiet latency), growing back while admissions use it, and the partner's bound by Little's law.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createMetrics } from '../observability/metrics.js';
import type { ResourceSnapshot } from '../resilience/resources.js';
import { CapacityMeter } from './capacity.js';

function meterWith(resources: ResourceSnapshot[] = []) {
  const metrics = createMetrics({ collectProcessMetrics: false });
  const meter = new CapacityMeter({ metrics, limiter: () => undefined, resources: () => resources });
  let now = 1_000_000;
  /** Half a second of checkouts: `count` answered 2xx taking `latencyS` each, and `shed` refused. */
  const step = async (count: number, latencyS: number, shed = 0) => {
    for (let index = 0; index < count; index += 1) metrics.httpRequestDurationSeconds.observe({ method: 'POST', route: '/v1/payments', status_class: '2xx' }, latencyS);
    if (shed > 0) metrics.shedRequests.inc({ priority: 'new', reason: 'concurrency_limit' }, shed);
    now += 500;
    await meter.sample(now);
  };
  return { metrics, meter, step };
}

test('healthy checkout has no bound; saturation drops it to 80% of the checkouts answered, and it grows back while used', async () => {
  const { meter, step } = meterWith();
  assert.equal(meter.capacityOf('KR'), undefined, 'nothing measured bounds nothing');
  for (let index = 0; index < 10; index += 1) await step(10, 0.2);
  assert.equal(meter.capacityOf('KR'), 40, 'healthy at 20 a second: slow start lets twice that in');
  for (let index = 0; index < 4; index += 1) await step(20, 0.2);
  assert.equal(meter.capacityOf('KR'), 80, 'and doubles while it holds');
  for (let index = 0; index < 4; index += 1) await step(10, 0.2);
  await step(10, 0.2, 3);
  // 20 checkouts a second over the last 2 s, and something shed: 80% of it.
  assert.equal(meter.capacityOf('KR'), 16);
  await step(10, 0.2, 3);
  assert.equal(meter.capacityOf('KR'), 16, 'one drop per 2 s: the last one takes effect first');
  for (let index = 0; index < 3; index += 1) await step(8, 0.2);
  assert.equal(meter.capacityOf('KR'), 16, 'no decision until a window wholly after the drop');
  await step(8, 0.2);
  assert.ok((meter.capacityOf('KR') ?? 0) > 16, 'admissions use the capacity and nothing saturates: it grows');
  const grown = meter.capacityOf('KR') ?? 0;
  for (let index = 0; index < 4; index += 1) await step(2, 0.2);
  assert.equal(meter.capacityOf('KR'), grown, 'unused capacity does not grow');
  // Twice the quiet latency is saturation too.
  for (let index = 0; index < 6; index += 1) await step(12, 0.6);
  assert.ok((meter.capacityOf('KR') ?? Infinity) <= 0.8 * grown, `slow checkouts drop it: ${meter.capacityOf('KR')} of ${grown}`);
});

test('the partner bounds a country by Little\'s law over its healthy resources; open breakers leave the floor', async () => {
  const resource = (state: 'closed' | 'open'): ResourceSnapshot => ({ resource: 'toss:127.0.0.1:4100:KR', state, bulkhead: { max: 16, in_flight: 0 } }) as unknown as ResourceSnapshot;
  const healthy = meterWith([resource('closed')]);
  const calls = async (meter: ReturnType<typeof meterWith>) => {
    for (let index = 0; index < 4; index += 1) {
      for (let call = 0; call < 10; call += 1) {
        meter.metrics.partnerCallDurationSeconds.observe({ gateway: 'toss', country: 'KR', operation: 'charge', outcome: 'ok' }, 0.2);
        meter.metrics.paymentOutcomes.inc({ outcome: 'ok', gateway: 'toss', country: 'KR' });
      }
      await meter.step(10, 0.2);
    }
  };
  await calls(healthy);
  // 16 calls at once, 200 ms each, one call a payment: 80 a second, at 80%.
  assert.equal(Math.round(healthy.meter.capacityOf('KR') ?? 0), 64);
  assert.equal(healthy.meter.capacityOf('JP'), undefined, 'another country is not bounded by it');
  const open = meterWith([resource('open')]);
  await calls(open);
  assert.equal(open.meter.capacityOf('KR'), 1);
});
