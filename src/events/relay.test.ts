// Proves the outbox relay and at-least-once consumers: every state change's event is published in order, once
// per relay round, and applied once per consumer (inbox); against the real NATS JetStream, a broker cut off
// while payments continue loses nothing (the events wait in the outbox and arrive once after it returns; /readyz
// reports it meanwhile), another deployment's events on the same server never arrive, and two
// relays running at once never publish an event twice.
import assert from 'node:assert/strict';
import { connect as connectSocket, createServer, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { after, before, describe, test } from 'node:test';
import { deleteStream, startTestKeel, testCard, uniqueKey, type TestKeel } from '../testing/harness.js';
import type { KeelEvent } from './bus.js';
import { createJetStreamBus, streamNameOf } from './bus-jetstream.js';
import { randomBytes, randomUUID } from 'node:crypto';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { nanos } from '@nats-io/nats-core';
import { newId, publicToUuid } from '../storage/ids.js';
import { acquireLease, deduplicated, relayLeaseMs, relayLeaseName, relayOnce, releaseLease } from './relay.js';

const pay = (keel: TestKeel) =>
  keel.request('POST', '/v1/payments', { body: { amount: 1000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: testCard(), confirm: true } });

describe('in-process bus', () => {
  let keel: TestKeel;
  before(async () => {
    keel = await startTestKeel();
  });
  after(async () => {
    await keel.close();
  });

  test('events are published in order, once, and applied once per consumer', async () => {
    const seen: KeelEvent[] = [];
    let applied = 0;
    const handler = deduplicated(keel.keel.database.db, 'test-consumer', async () => {
      applied += 1;
    });
    await keel.keel.bus.subscribe('recorder', async (event) => {
      seen.push(event);
      await handler(event);
      await handler(event); // a redelivery: the inbox absorbs it
    });
    const payment = await pay(keel);
    assert.equal(await keel.keel.jobs.relay(), 2);
    assert.equal(await keel.keel.jobs.relay(), 0, 'nothing is published twice');
    assert.deepEqual(seen.map((event) => event.type), ['payment.created', 'payment.succeeded']);
    assert.equal(seen[1]?.data.object['id'], payment.body.id);
    assert.match(seen[0]?.id ?? '', /^evt_/);
    assert.equal(applied, 2);
    const unpublished = await keel.keel.database.db.selectFrom('outbox').select('id').where('published_at', 'is', null).execute();
    assert.equal(unpublished.length, 0);
  });

  test('a partition another relay holds waits for it; the rest publish, each payment in order', async () => {
    const db = keel.keel.database.db;
    const seen: KeelEvent[] = [];
    await keel.keel.bus.subscribe('partition-recorder', async (event) => {
      seen.push(event);
    });
    const merchants = await Promise.all(Array.from({ length: 6 }, (_, index) => keel.createMerchant({ name: `Partitioned ${index}` })));
    for (const merchant of merchants) {
      for (let index = 0; index < 2; index += 1) {
        const response = await keel.request('POST', '/v1/payments', {
          body: { amount: 1000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: testCard(), confirm: true },
          secretKey: merchant.secret_key,
        });
        assert.equal(response.status, 200);
      }
    }
    const heldMerchant = publicToUuid('merchant', merchants[0]?.id ?? '') ?? '';
    const held = (await db.selectFrom('outbox').select('relay_partition').where('merchant_id', '=', heldMerchant).executeTakeFirstOrThrow()).relay_partition;
    assert.ok(await acquireLease(db, relayLeaseName(held), 'relay_elsewhere', relayLeaseMs));

    while ((await keel.keel.jobs.relay()) > 0);
    const waiting = await db.selectFrom('outbox').select(['relay_partition', 'merchant_id']).where('published_at', 'is', null).execute();
    assert.ok(waiting.length >= 4, 'the held merchant\'s four events wait');
    assert.deepEqual([...new Set(waiting.map((row) => row.relay_partition))], [held], 'only the held partition waits');

    await releaseLease(db, relayLeaseName(held), 'relay_elsewhere');
    while ((await keel.keel.jobs.relay()) > 0);
    assert.equal(seen.length, 6 * 2 * 2, 'every event published once');
    const byPayment = new Map<string, string[]>();
    for (const event of seen) byPayment.set(String(event.data.object['id']), [...(byPayment.get(String(event.data.object['id'])) ?? []), event.type]);
    for (const types of byPayment.values()) assert.deepEqual(types, ['payment.created', 'payment.succeeded']);
  });
});

/** A TCP proxy in front of NATS that the test can cut and restore, as a broker outage looks to Keel. */
async function startProxy(target: URL): Promise<{ url: string; cut(): Promise<void>; restore(): Promise<void>; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve) => {
      server = createServer((client) => {
        const upstream = connectSocket(Number(target.port), target.hostname);
        sockets.add(client).add(upstream);
        client.pipe(upstream).pipe(client);
        const drop = () => {
          client.destroy();
          upstream.destroy();
        };
        client.on('error', drop).on('close', drop);
        upstream.on('error', drop).on('close', drop);
      });
      server.listen(port, '127.0.0.1', () => {
        const address = server?.address();
        port = typeof address === 'object' && address !== null ? address.port : port;
        resolve();
      });
    });
  const cut = async () => {
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    await new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
  };
  await listen();
  return { url: `nats://127.0.0.1:${port}`, cut, restore: listen, close: cut };
}

const natsUrl = process.env['KEEL_TEST_NATS_URL'];
if ((natsUrl === undefined || natsUrl === '') && process.env['KEEL_TEST_REQUIRE_SERVICES'] === '1') throw new Error('KEEL_TEST_NATS_URL is required');

describe('NATS JetStream', { skip: natsUrl === undefined || natsUrl === '' ? 'no KEEL_TEST_NATS_URL' : false }, () => {
  let keel: TestKeel;
  let proxy: Awaited<ReturnType<typeof startProxy>>;
  before(async () => {
    proxy = await startProxy(new URL(natsUrl ?? ''));
    keel = await startTestKeel({ config: { natsUrl: proxy.url } });
  });
  after(async () => {
    await keel?.close();
    await proxy?.close();
  });

  async function relayUntilEmpty(deadlineMs: number): Promise<void> {
    const until = Date.now() + deadlineMs;
    while (Date.now() < until) {
      const left = await keel.keel.database.db.selectFrom('outbox').select('id').where('published_at', 'is', null).execute();
      if (left.length === 0) return;
      await keel.keel.jobs.relay().catch(() => 0);
      await sleep(200);
    }
    throw new Error('the outbox did not drain');
  }

  test('a broker outage while payments continue: every event arrives exactly once afterwards; two relays never duplicate', { timeout: 120_000 }, async () => {
    const merchant = `mer_${keel.merchant.id.slice(4)}`;
    const deliveries = new Map<string, number>();
    let applied = 0;
    const apply = deduplicated(keel.keel.database.db, `test-${uniqueKey('consumer')}`, async () => {
      applied += 1;
    });
    await keel.keel.bus.subscribe(uniqueKey('durable'), async (event) => {
      if (event.merchant !== merchant) return;
      deliveries.set(event.id, (deliveries.get(event.id) ?? 0) + 1);
      await apply(event);
    });

    for (let index = 0; index < 3; index += 1) assert.equal((await pay(keel)).status, 200);
    await relayUntilEmpty(20_000);

    await proxy.cut();
    for (let index = 0; index < 3; index += 1) assert.equal((await pay(keel)).status, 200, 'payments continue without the broker');
    await assert.rejects(keel.keel.jobs.relay(), 'publishing fails while the broker is away');
    const unready = await keel.request('GET', '/readyz', { secretKey: null });
    assert.equal(unready.status, 503, 'the instance reports the broker unreachable');
    assert.equal(unready.body.checks.database, 'ok');
    assert.notEqual(unready.body.checks.nats, 'ok');
    const waiting = await keel.keel.database.db.selectFrom('outbox').select('id').where('published_at', 'is', null).execute();
    assert.equal(waiting.length, 6, 'the events wait in the outbox');
    await proxy.restore();
    await relayUntilEmpty(30_000);
    const ready = await keel.request('GET', '/readyz', { secretKey: null });
    assert.equal(ready.status, 200);
    assert.equal(ready.body.checks.nats, 'ok');

    // Two relays at once, each with its own broker connection, over the same outbox.
    for (let index = 0; index < 3; index += 1) await pay(keel);
    const ownStream = { namespace: keel.keel.eventNamespace, deployment: keel.keel.deployment };
    const second = await createJetStreamBus(proxy.url, pino({ level: 'silent' }), ownStream);
    try {
      await Promise.all([keel.keel.jobs.relay(), relayOnce(keel.keel.database.db, second, 'relay_second_instance')]);
      await relayUntilEmpty(20_000);
    } finally {
      await second.close();
    }
    // Another deployment on the same server publishes an event naming this merchant: it must not arrive here.
    const otherNamespace = `other_${randomBytes(6).toString('hex')}`;
    const foreign = await createJetStreamBus(proxy.url, pino({ level: 'silent' }), { namespace: otherNamespace, deployment: randomUUID() });
    try {
      await foreign.publish({ id: newId('event').publicId, type: 'payment.succeeded', created_at: new Date().toISOString(), merchant, correlation_id: null, data: { object: {} } });
    } finally {
      await foreign.close();
      await deleteStream(natsUrl ?? '', streamNameOf(otherNamespace));
    }
    await pay(keel);
    await relayUntilEmpty(20_000);

    const expected = (await keel.keel.database.db.selectFrom('outbox').select('id').execute()).length;
    for (let waited = 0; deliveries.size < expected && waited < 100; waited += 1) await sleep(200);
    assert.equal(deliveries.size, expected, 'every event arrived');
    assert.deepEqual([...deliveries.values()].filter((count) => count > 1), [], 'no event was delivered twice');
    assert.equal(applied, expected);
  });

  test('the stream keeps events for KEEL_RETENTION_DAYS (max_age), and a start brings an existing stream to it', async () => {
    const connection = await connect({ servers: natsUrl ?? '' });
    try {
      const manager = await jetstreamManager(connection);
      const maxAge = async () => (await manager.streams.info(keel.keel.eventStream ?? '')).config.max_age;
      assert.equal(await maxAge(), nanos(30 * 86_400_000), 'the test Keel started with the default 30 days');
      const ownStream = { namespace: keel.keel.eventNamespace, deployment: keel.keel.deployment };
      const shorter = await createJetStreamBus(natsUrl ?? '', pino({ level: 'silent' }), { ...ownStream, maxAgeDays: 7 });
      await shorter.close();
      assert.equal(await maxAge(), nanos(7 * 86_400_000));
      const back = await createJetStreamBus(natsUrl ?? '', pino({ level: 'silent' }), { ...ownStream, maxAgeDays: 30 });
      await back.close();
      assert.equal(await maxAge(), nanos(30 * 86_400_000));
    } finally {
      await connection.close();
    }
  });
});
