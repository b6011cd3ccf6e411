import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import { createMerchant } from '../src/merchants/merchants.js';
import { createKeel } from '../src/runtime.js';
import { startSimulator } from '../src/simulator/server.js';
import { deleteStream } from '../src/testing/harness.js';
import { dropSchema } from '../src/storage/database.js';
import { newId, publicToUuid } from '../src/storage/ids.js';
import { createJetStreamBus } from '../src/events/bus-jetstream.js';
import { relayOnce } from '../src/events/relay.js';
import { projectionConsumer } from '../src/reports/projection.js';

/**
 * `npm run bench -- worker`: one worker's throughput on this machine. It fills the outbox with payment events
 * of 16 merchants (as payments would), then measures the relay publishing them to NATS JetStream, the webhook
 * pipeline (consumer plus deliveries to a local receiver) delivering them and the projections consumer counting
 * them; then the same load published by two relays at once, as two workers share the outbox's partitions.
 */
const databaseUrl = process.env['KEEL_DATABASE_URL'] ?? process.env['KEEL_TEST_DATABASE_URL'] ?? 'postgres://root@127.0.0.1:5432/test';
const natsUrl = process.env['KEEL_NATS_URL'] ?? process.env['KEEL_TEST_NATS_URL'] ?? 'nats://127.0.0.1:4222';
const events = Number(process.env['KEEL_BENCH_EVENTS'] ?? 5_000);
const merchantsCount = 16;

export async function runWorkerBench(): Promise<void> {
  const schema = `keel_bench_${randomBytes(4).toString('hex')}`;
  let received = 0;
  const hooks = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      received += 1;
      response.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => hooks.listen(0, '127.0.0.1', () => resolve()));
  // A worker names its partners' gateway (only --role all runs one in-process); this bench calls no partner.
  const gateway = await startSimulator({ port: 0 });
  const keel = await createKeel({
    config: { ...loadConfig({}), databaseUrl, natsUrl, gatewayUrl: gateway.url, logLevel: 'warn' },
    role: 'worker',
    inMemory: true,
    databaseSchema: schema,
    logDestination: pino.destination('/dev/null'),
  });
  try {
    const merchantIds: string[] = [];
    for (let index = 0; index < merchantsCount; index += 1) {
      const merchant = await createMerchant(keel.database.db, keel.services.deps.cipher, { name: `Bench ${index}` });
      const merchantId = publicToUuid('merchant', merchant.id) ?? '';
      merchantIds.push(merchantId);
      await keel.database.db
        .insertInto('webhook_endpoints')
        .values({ id: newId('webhookEndpoint').uuid, merchant_id: merchantId, url: `http://127.0.0.1:${(hooks.address() as AddressInfo).port}/`, events: JSON.stringify(['*']), secret_encrypted: keel.services.deps.cipher.encrypt('whsec_bench') })
        .execute();
    }
    const db = keel.database.db;
    const fill = async () => {
      for (let offset = 0; offset < events; offset += 1_000) {
        await db
          .insertInto('outbox')
          .values(
            Array.from({ length: Math.min(1_000, events - offset) }, (_, index) => {
              const payment = newId('payment');
              const object = { id: payment.publicId, object: 'payment', amount: 1000, amount_received: 1000, currency: 'KRW', country: 'KR', gateway: 'toss', capture_method: 'automatic', status: 'succeeded', created_at: new Date().toISOString() };
              return { id: newId('event').uuid, merchant_id: merchantIds[(offset + index) % merchantIds.length] as string, type: 'payment.succeeded', aggregate_id: payment.uuid, data: JSON.stringify({ object }) };
            }),
          )
          .execute();
      }
    };
    const projected = async () => Number((await db.selectFrom('inbox').select((eb) => eb.fn.countAll<string>().as('n')).where('consumer', '=', projectionConsumer).executeTakeFirstOrThrow()).n);

    await fill();
    const relayStarted = performance.now();
    // The projections consumer runs alongside; note when it has counted every event.
    const projectionsDone = (async () => {
      while ((await projected()) < events && performance.now() - relayStarted < 300_000) await sleep(20);
      return (performance.now() - relayStarted) / 1000;
    })();
    while ((await keel.jobs.relay()) > 0) {
      // publishing a batch per partition per round until the outbox is empty
    }
    const relaySeconds = (performance.now() - relayStarted) / 1000;
    const deliveryStarted = performance.now();
    while (received < events && performance.now() - deliveryStarted < 300_000) {
      if ((await keel.jobs.webhooks()) === 0) await sleep(20);
    }
    const deliverySeconds = (performance.now() - deliveryStarted) / 1000;
    const projectionSeconds = await projectionsDone;

    // The same load again, published by two relays at once (two workers), sharing the partitions.
    await fill();
    const second = await createJetStreamBus(natsUrl, pino({ level: 'silent' }), { namespace: keel.eventNamespace, deployment: keel.deployment });
    const twoStarted = performance.now();
    try {
      const drain = async (relay: () => Promise<number>) => {
        for (let idle = 0; idle < 3; ) {
          if ((await relay()) === 0) {
            idle += 1;
            await sleep(5);
          } else idle = 0;
        }
      };
      await Promise.all([drain(() => keel.jobs.relay()), drain(() => relayOnce(db, second, 'relay_bench_second'))]);
    } finally {
      await second.close();
    }
    const twoSeconds = (performance.now() - twoStarted) / 1000;
    const left = await db.selectFrom('outbox').select('id').where('published_at', 'is', null).execute();
    if (left.length > 0) throw new Error(`${left.length} events left unpublished`);

    const oneRate = events / relaySeconds;
    const twoRate = events / twoSeconds;
    console.log(`Keel worker benchmark: ${events} events over ${merchantsCount} merchants, PostgreSQL and NATS JetStream on loopback`);
    console.log(`relay to JetStream, one relay:  ${oneRate.toFixed(0)} events/s`);
    console.log(`relay to JetStream, two relays: ${twoRate.toFixed(0)} events/s (ratio ${(twoRate / oneRate).toFixed(2)} to one relay)`);
    console.log(`webhooks (consume + deliver):   ${(received / deliverySeconds).toFixed(0)} deliveries/s (${received} delivered)`);
    console.log(`projections (consume + apply):  ${(events / projectionSeconds).toFixed(0)} events/s, counted from the relay's start`);
  } finally {
    await keel.close();
    await gateway.close();
    await new Promise<void>((resolve) => hooks.close(() => resolve()));
    await dropSchema(databaseUrl, schema);
    if (keel.eventStream !== undefined) await deleteStream(natsUrl, keel.eventStream);
  }
}
