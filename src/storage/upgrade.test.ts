// Proves the upgrade to one event stream per deployment (migration 0018): a database as an earlier Keel left it,
// with events published to the shared stream, gets its identity, and exactly the last day's events that a
// consumer had not yet applied (no inbox entry for webhooks or for projections) are unpublished again, so the
// relay publishes them to the new stream; events both consumers applied, and older ones, stay as they were.
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { test } from 'node:test';
import { useUpgradeDatabase } from '../testing/harness.js';
import { deploymentId, migrateToLatest } from './database.js';
import { newId } from './ids.js';

const startAt = useUpgradeDatabase();

test('the upgrade republishes what a consumer had not applied, and only that', async () => {
  const { database, merchantId: merchant } = await startAt('0017_lists');
  const db = database.db;
  const event = async (name: string, consumers: readonly string[], age = '1 minute', published = true) => {
    const id = newId('event').uuid;
    await sql`INSERT INTO outbox (id, merchant_id, type, aggregate_id, data, published_at, created_at)
      VALUES (${id}, ${merchant}, 'payment.succeeded', ${id}, '{"object":{}}', ${published ? sql`now()` : sql`NULL`}, now() - ${age}::interval)`.execute(db);
    for (const consumer of consumers) await sql`INSERT INTO inbox (consumer, event_id) VALUES (${consumer}, ${id})`.execute(db);
    return [name, id] as const;
  };
  const events = new Map([
    await event('applied by both', ['webhooks', 'projections']),
    await event('applied by projections only', ['projections']),
    await event('applied by neither', []),
    await event('older than a day, unapplied', [], '2 days'),
    await event('not yet published', [], '1 minute', false),
  ]);
  await migrateToLatest(database);
  const rows = await db.selectFrom('outbox').select(['id', 'published_at']).execute();
  const unpublished = new Set(rows.filter((row) => row.published_at === null).map((row) => row.id));
  const state = Object.fromEntries([...events].map(([name, id]) => [name, unpublished.has(id) ? 'to publish' : 'published']));
  assert.deepEqual(state, {
    'applied by both': 'published',
    'applied by projections only': 'to publish',
    'applied by neither': 'to publish',
    'older than a day, unapplied': 'published',
    'not yet published': 'to publish',
  });
  assert.match(await deploymentId(db), /^[0-9a-f-]{36}$/);
});
