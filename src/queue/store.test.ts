import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { testRedisUrl } from '../testing/harness.js';
import { newId } from '../storage/ids.js';
import { MemoryQueueStore, RedisQueueStore, quietMs, type QueueStore } from './store.js';

/** The same behaviour from both stores, with the clock in the test's hands. */
const redisUrl = testRedisUrl();
const redis = redisUrl === undefined ? undefined : new Redis(redisUrl);
after(() => redis?.disconnect());

const stores: [string, () => QueueStore, boolean][] = [
  ['memory', () => new MemoryQueueStore(), false],
  ['redis', () => new RedisQueueStore(redis as Redis, `queue_test_${randomBytes(4).toString('hex')}`), redis === undefined],
];

const ttlMs = 300_000;
const base = (now: number, configured: number | undefined, instance = 'i1') => ({ now, configured, measured: undefined, instance, ttlMs });
const join = (store: QueueStore, now: number, configured: number | undefined, queue = 'KR') =>
  store.join({ ...base(now, configured), queue, id: newId('queueTicket').publicId, merchant: 'mer_1', customer: null, session: null });

for (const [name, make, skip] of stores) {
  describe(`${name} store`, { skip: skip ? 'no KEEL_TEST_REDIS_URL' : false }, () => {
    test('below capacity everyone is admitted at once; past it, shoppers wait in arrival order and are admitted at the capacity', async () => {
      const store = make();
      const t0 = 1_800_000_000_000;
      const first = await join(store, t0, 2);
      const second = await join(store, t0, 2);
      assert.equal(first.ticket.status, 'admitted');
      assert.equal(first.ticket.position, 0);
      assert.equal(second.ticket.status, 'admitted', 'a burst of one second of capacity');
      const waiting = [];
      for (let index = 0; index < 5; index += 1) waiting.push(await join(store, t0, 2));
      assert.deepEqual(waiting.map((entry) => entry.ticket.position), [1, 2, 3, 4, 5]);
      assert.equal(waiting[0]?.snapshot.edge, 'started', 'the first shopper to wait starts the queue');
      assert.equal(waiting[1]?.snapshot.edge, undefined);
      // Half a second at 2 per second admits exactly one: the head.
      const later = await store.status(waiting[1]?.ticket.id ?? '', base(t0 + 500, 2));
      assert.equal(later?.ticket.position, 1);
      assert.equal((await store.status(waiting[0]?.ticket.id ?? '', base(t0 + 500, 2)))?.ticket.status, 'admitted');
      // A second in, two of the five are admitted; a shopper arriving now goes behind the three still waiting.
      const late = await join(store, t0 + 1_000, 2);
      assert.equal(late.ticket.status, 'waiting');
      assert.equal(late.ticket.position, 4);
      const statuses = [];
      for (const entry of [...waiting, late]) statuses.push((await store.status(entry.ticket.id, base(t0 + 3_000, 2)))?.ticket);
      assert.deepEqual(statuses.map((ticket) => ticket?.status), ['admitted', 'admitted', 'admitted', 'admitted', 'admitted', 'admitted']);
      const order = [...statuses].sort((a, b) => (a?.admittedAt ?? 0) - (b?.admittedAt ?? 0) || 0).map((ticket) => ticket?.id);
      assert.deepEqual(order, statuses.map((ticket) => ticket?.id), 'admitted in the order they joined');
      const snapshot = await store.advance({ ...base(t0 + 3_000, 2), queue: 'KR' });
      assert.equal(snapshot.waiting, 0);
      assert.ok(snapshot.rate > 0.5 && snapshot.rate <= 2, `the smoothed admission rate follows the capacity: ${snapshot.rate}`);
    });

    test('an admission unused for the TTL lapses; a used one does not, and only its user may use it again', async () => {
      const store = make();
      const t0 = 1_800_000_100_000;
      const unused = await join(store, t0, 10);
      const used = await join(store, t0, 10);
      assert.equal((await store.use(used.ticket.id, 'cs_1', 'mer_2', base(t0 + 1_000, 10))).result, 'missing', "another merchant's use");
      assert.equal((await store.use(used.ticket.id, 'cs_1', 'mer_1', base(t0 + 1_000, 10))).result, 'ok', 'still unused by its merchant');
      assert.equal((await store.use(used.ticket.id, 'cs_1', 'mer_1', base(t0 + 2_000, 10))).result, 'ok', 'a retry by the same user');
      assert.equal((await store.use(used.ticket.id, 'cs_2', 'mer_1', base(t0 + 2_000, 10))).result, 'used', 'someone else');
      assert.equal((await store.status(unused.ticket.id, base(t0 + ttlMs - 1, 10)))?.ticket.status, 'admitted');
      const sweep = await store.advance({ ...base(t0 + ttlMs, 10), queue: 'KR' });
      assert.equal(sweep.lapsed, 1, 'the sweep counts the lapsed admission once');
      assert.equal((await store.advance({ ...base(t0 + ttlMs + 1, 10), queue: 'KR' })).lapsed, 0);
      const lapsed = await store.status(unused.ticket.id, base(t0 + ttlMs + 1, 10));
      assert.equal(lapsed?.ticket.status, 'expired');
      assert.equal(lapsed?.ticket.position, null);
      assert.equal((await store.use(unused.ticket.id, 'cs_3', 'mer_1', base(t0 + ttlMs + 2, 10))).result, 'expired');
      assert.equal((await store.status(used.ticket.id, base(t0 + ttlMs + 2, 10)))?.ticket.status, 'admitted', 'a used admission stays admitted');
      const waiting = await join(store, t0 + ttlMs + 2, 0.001);
      const blocked = await join(store, t0 + ttlMs + 2, 0.001);
      assert.equal(waiting.ticket.status, 'admitted');
      assert.equal((await store.use(blocked.ticket.id, 'cs_4', 'mer_1', base(t0 + ttlMs + 3, 0.001))).result, 'waiting');
      assert.equal((await store.use('qt_00000000000000000000000000', 'cs_4', 'mer_1', base(t0 + ttlMs + 3, 0.001))).result, 'missing');
      assert.equal(await store.status('qt_00000000000000000000000000', base(t0, 1)), undefined);
    });

    test('the queue stops only after a quiet minute, once, and starts again on the next wait', async () => {
      const store = make();
      const t0 = 1_800_000_200_000;
      await join(store, t0, 1, 'JP');
      const waits = await join(store, t0, 1, 'JP');
      assert.equal(waits.snapshot.edge, 'started');
      assert.equal((await store.advance({ ...base(t0 + 1_000, 1), queue: 'JP' })).waiting, 0);
      assert.equal((await store.advance({ ...base(t0 + 1_000 + quietMs - 1, 1), queue: 'JP' })).edge, undefined);
      assert.equal((await store.advance({ ...base(t0 + 1_000 + quietMs, 1), queue: 'JP' })).edge, 'stopped');
      assert.equal((await store.advance({ ...base(t0 + 2_000 + quietMs, 1), queue: 'JP' })).edge, undefined);
      await join(store, t0 + 3_000 + quietMs, 1, 'JP');
      assert.equal((await join(store, t0 + 3_000 + quietMs, 1, 'JP')).snapshot.edge, 'started');
      assert.deepEqual((await store.queues()).sort(), ['JP']);
    });

    test('instances add up their measured capacities; the configured one bounds the sum; none measured is unbounded', async () => {
      const store = make();
      const t0 = 1_800_000_300_000;
      const at = (now: number, instance: string, measured: number | undefined, configured?: number) => ({ now, configured, measured, instance, ttlMs });
      assert.equal((await store.advance({ ...at(t0, 'a', undefined), queue: 'US' })).capacity, Infinity);
      await store.advance({ ...at(t0, 'a', 3), queue: 'US' });
      assert.equal((await store.advance({ ...at(t0 + 1, 'b', 4), queue: 'US' })).capacity, 7);
      assert.equal((await store.advance({ ...at(t0 + 2, 'b', 4, 5), queue: 'US' })).capacity, 5);
      // An instance that stopped publishing (stopped, crashed) no longer counts.
      assert.equal((await store.advance({ ...at(t0 + 10_000, 'b', 4), queue: 'US' })).capacity, 4);
      // Unbounded: a crowd is admitted at once.
      const crowd = [];
      for (let index = 0; index < 20; index += 1) crowd.push(await store.join({ ...at(t0 + 20_000, 'a', undefined), queue: 'FR', id: newId('queueTicket').publicId, merchant: 'm', customer: null, session: null }));
      assert.ok(crowd.every((entry) => entry.ticket.status === 'admitted'));
    });
  });
}
