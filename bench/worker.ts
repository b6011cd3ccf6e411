import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import { createMerchant } from '../src/merchants/merchants.js';
import { createKeel } from '../src/runtime.js';
import { dropSchema } from '../src/storage/database.js';
import { newId, publicToUuid } from '../src/storage/ids.js';

/**
 * `npm run bench -- worker`: one worker's throughput on this machine. It fills the outbox with events (as
 * payments would), then measures the relay publishing them to NATS JetStream and the webhook pipeline (consumer
 * plus deliveries to a local receiver) delivering them.
 */
const databaseUrl = process.env['KEEL_DATABASE_URL'] ?? process.env['KEEL_TEST_DATABASE_URL'] ?? 'postgres://root@127.0.0.1:5432/test';
const natsUrl = process.env['KEEL_NATS_URL'] ?? process.env['KEEL_TEST_NATS_URL'] ?? 'nats://127.0.0.1:4222';
const events = Number(process.env['KEEL_BENCH_EVENTS'] ?? 5_000);

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
  const keel = await createKeel({
    config: { ...loadConfig({}), databaseUrl, natsUrl, logLevel: 'warn' },
    role: 'worker',
    inMemory: true,
    databaseSchema: schema,
    simulatorPort: 0,
    logDestination: pino.destination('/dev/null'),
  });
  try {
    const merchant = await createMerchant(keel.database.db, keel.services.deps.cipher, { name: 'Bench' });
    const merchantId = publicToUuid('merchant', merchant.id) ?? '';
    await keel.database.db
      .insertInto('webhook_endpoints')
      .values({ id: newId('webhookEndpoint').uuid, merchant_id: merchantId, url: `http://127.0.0.1:${(hooks.address() as AddressInfo).port}/`, events: JSON.stringify(['*']), secret_encrypted: keel.services.deps.cipher.encrypt('whsec_bench') })
      .execute();
    for (let offset = 0; offset < events; offset += 1_000) {
      await keel.database.db
        .insertInto('outbox')
        .values(Array.from({ length: Math.min(1_000, events - offset) }, () => ({ id: newId('event').uuid, merchant_id: merchantId, type: 'payment.succeeded', aggregate_id: newId('payment').uuid, data: JSON.stringify({ object: { amount: 1000 } }) })))
        .execute();
    }
    const relayStarted = performance.now();
    while ((await keel.jobs.relay()) > 0) {
      // publishing in batches of 100 until the outbox is empty
    }
    const relaySeconds = (performance.now() - relayStarted) / 1000;
    const deliveryStarted = performance.now();
    while (received < events && performance.now() - deliveryStarted < 300_000) {
      if ((await keel.jobs.webhooks()) === 0) await sleep(20);
    }
    const deliverySeconds = (performance.now() - deliveryStarted) / 1000;
    console.log(`Keel worker benchmark: ${events} events, PostgreSQL and NATS JetStream on loopback`);
    console.log(`relay to JetStream:           ${(events / relaySeconds).toFixed(0)} events/s`);
    console.log(`webhooks (consume + deliver): ${(received / deliverySeconds).toFixed(0)} deliveries/s (${received} delivered)`);
  } finally {
    await keel.close();
    await new Promise<void>((resolve) => hooks.close(() => resolve()));
    await dropSchema(databaseUrl, schema);
  }
}
