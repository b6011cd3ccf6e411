// The measured checkout capacity: no bound while checkout is healthy, a slow start that holds once shoppers wait,
// 90% of the throughput once Keel's own time saturates, regained and probed past while used, the partner's time
// left out, and the partner's bound by Little's law.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import type { CheckoutQueueConfig } from '../config.js';
import { createMetrics } from '../observability/metrics.js';
import type { ResourceSnapshot } from '../resilience/resources.js';
import { FieldCipher } from '../storage/encryption.js';
import { CapacityMeter, dropFactor, probeGrowthPerS } from './capacity.js';
import { CheckoutQueue } from './checkout-queue.js';
import { MemoryQueueStore } from './store.js';

function meterWith(resources: ResourceSnapshot[] = []) {
  const metrics = createMetrics({ collectProcessMetrics: false });
  const meter = new CapacityMeter({ metrics, limiter: () => undefined, resources: () => resources });
  let now = 1_000_000;
  /**
   * Half a second of checkouts: `count` answered 2xx, each taking `ownS` of Keel's time and `partnerS` at the
   * partner; `shed` refused; `queueing` when shoppers wait in the queue.
   */
  const step = async (count: number, ownS: number, options: { partnerS?: number; shed?: number; queueing?: boolean } = {}) => {
    const labels = { method: 'POST', route: '/v1/payments', status_class: '2xx' };
    for (let index = 0; index < count; index += 1) {
      metrics.httpRequestDurationSeconds.observe(labels, ownS + (options.partnerS ?? 0.2));
      metrics.httpRequestOwnDurationSeconds.observe(labels, ownS);
    }
    if ((options.shed ?? 0) > 0) metrics.shedRequests.inc({ priority: 'new', reason: 'concurrency_limit' }, options.shed);
    now += 500;
    await meter.sample(now, options.queueing ?? false);
  };
  const steps = async (times: number, ...args: Parameters<typeof step>) => {
    for (let index = 0; index < times; index += 1) await step(...args);
  };
  return { metrics, meter, step, steps };
}

const round = (value: number) => Math.round(value * 100) / 100;
const capacity = (meter: CapacityMeter) => round(meter.capacityOf('KR') ?? NaN);

test('the slow start lets in twice what checkout answered, doubling while it holds, and holds once shoppers wait', async () => {
  const { meter, steps } = meterWith();
  assert.equal(meter.capacityOf('KR'), undefined, 'nothing measured bounds nothing');
  await steps(10, 10, 0.02);
  assert.equal(capacity(meter), 40, 'healthy at 20 a second: slow start lets twice that in');
  assert.equal(meter.apiCapacity, undefined, 'and has not saturated');
  await steps(4, 20, 0.02);
  assert.equal(capacity(meter), 80, 'doubles while it holds');
  await steps(1, 20, 0.02, { queueing: true });
  assert.equal(meter.apiCapacity, 80, 'shoppers wait under it: it holds there');
  await steps(4, 20, 0.02, { queueing: true });
  assert.equal(capacity(meter), 80, 'and does not double again however much is answered');
  assert.equal(meter.probes('KR'), true, 'from here it probes');
});

test('Keel\'s own time saturating drops the capacity once to 90% of the throughput; a drain does not compound it', async () => {
  const { meter, steps } = meterWith();
  await steps(10, 10, 0.02);
  await steps(1, 10, 0.02, { queueing: true });
  assert.equal(meter.apiCapacity, 40);
  // Own time up by 0.2 s over a quiet latency of 0.22 s: more than half of it.
  await steps(4, 10, 0.22, { queueing: true });
  assert.equal(capacity(meter), round(dropFactor * 20), '90% of the 20 a second answered');
  await steps(4, 10, 0.22, { queueing: true });
  assert.equal(capacity(meter), round(dropFactor * 20), 'answering more than it admits, checkout is draining: no second drop');
  await steps(8, 10, 0.22, { queueing: true });
  assert.equal(capacity(meter), round(dropFactor * dropFactor * 20), 'still saturated past the drain: it drops again');
  const low = meter.capacityOf('KR') ?? 0;
  await steps(2, 1, 0.02, { queueing: true });
  assert.equal(meter.capacityOf('KR'), low, 'unused capacity does not grow');
});

test('used and keeping up, the capacity regains the throughput it saturated at, then probes past it steadily', async () => {
  const { meter, steps } = meterWith();
  await steps(10, 15, 0.02);
  await steps(1, 15, 0.02, { queueing: true });
  await steps(4, 15, 0.3, { queueing: true });
  const dropped = meter.apiCapacity ?? 0;
  assert.equal(Math.round(dropped * 100) / 100, dropFactor * 30, 'saturated at 30 a second');
  // Healthy again and answering what is admitted: once a window wholly after the drop shows it, the gap to 30 a
  // second closes (half of it a second, at least one admission).
  await steps(5, 14, 0.02, { queueing: true });
  assert.ok((meter.apiCapacity ?? 0) > dropped && (meter.apiCapacity ?? 0) < 30, `regaining: ${meter.apiCapacity}`);
  await steps(8, 15, 0.02, { queueing: true });
  assert.ok((meter.apiCapacity ?? 0) > 30, `past the throughput it saturated at: ${meter.apiCapacity}`);
  const before = meter.apiCapacity ?? 0;
  await steps(2, 20, 0.02, { queueing: true });
  assert.equal(round((meter.apiCapacity ?? 0) / before), round(1 + probeGrowthPerS), 'probing 5% a second');
});

test('the partner\'s time is not Keel\'s saturation: a slow partner leaves the API bound alone', async () => {
  const { meter, steps } = meterWith();
  await steps(10, 10, 0.02);
  await steps(1, 10, 0.02, { queueing: true });
  await steps(8, 10, 0.02, { partnerS: 1.5, queueing: true });
  assert.equal(meter.apiCapacity, 40, 'total latency seven times quiet, own time unchanged: no drop');
  await steps(4, 10, 0.02, { shed: 3, queueing: true });
  assert.equal(capacity(meter), round(dropFactor * 20), 'shedding is saturation');
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
      await meter.step(10, 0.02);
    }
  };
  await calls(healthy);
  // 16 calls at once, 200 ms each, one call a payment: 80 a second, at 80%.
  assert.equal(Math.round(healthy.meter.capacityOf('KR') ?? 0), 64);
  assert.equal(healthy.meter.probes('KR'), false, 'the partner bound does not probe');
  assert.equal(healthy.meter.capacityOf('JP'), undefined, 'another country is not bounded by it');
  const open = meterWith([resource('open')]);
  await calls(open);
  assert.equal(open.meter.capacityOf('KR'), 1);
});

test('in auto, the estimated wait counts the probing growth: W solves ∫ λ·1.05ᵗ dt = L; at a configured rate it is L / λ', async () => {
  const { metrics, meter, steps } = meterWith();
  const now = 1_000_000;
  const queueOf = (config: CheckoutQueueConfig, withMeter: CapacityMeter | undefined) =>
    new CheckoutQueue({
      config,
      store: new MemoryQueueStore(),
      meter: withMeter,
      instance: 'test',
      registry: new Registry(),
      signals: metrics.signals,
      cipher: new FieldCipher(randomBytes(32)),
      logger: pino({ level: 'silent' }),
      now: () => now,
    });
  const join = async (queue: CheckoutQueue, count: number) => {
    const tickets = [];
    for (let index = 0; index < count; index += 1) tickets.push(await queue.join({ queue: 'KR', merchant: 'mer_1', customer: null, session: null }));
    return tickets;
  };
  // 10 checkouts a second, then shoppers wait: the capacity holds at the slow start, 20 a second, and probes.
  await steps(10, 5, 0.02);
  await steps(1, 5, 0.02, { queueing: true });
  assert.equal(meter.apiCapacity, 20);
  const auto = queueOf({ mode: 'auto', capacityPerS: undefined, admissionTtlS: 300 }, meter);
  await auto.tick();
  const tickets = await join(auto, 221);
  const last = tickets.at(-1);
  assert.equal(last?.status, 'waiting');
  const position = last?.position ?? 0;
  const k = Math.log(1 + probeGrowthPerS);
  assert.equal(last?.estimatedWaitS, Math.round((Math.log(1 + (position * k) / 20) / k) * 10) / 10);
  assert.ok((last?.estimatedWaitS ?? 0) < position / 20, 'shorter than at a rate that never grows');
  const fixed = queueOf({ mode: 'on', capacityPerS: 20, admissionTtlS: 300 }, undefined);
  const fixedLast = (await join(fixed, 221)).at(-1);
  assert.equal(fixedLast?.estimatedWaitS, Math.round(((fixedLast?.position ?? 0) / 20) * 10) / 10);
});
