import { randomBytes } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import { Agent, request } from 'undici';
import { KeelError } from '../errors.js';
import type { KeelEvent } from '../events/bus.js';
import { deduplicated, toKeelEvent } from '../events/relay.js';
import type { MerchantContext } from '../merchants/types.js';
import type { FieldCipher } from '../storage/encryption.js';
import { newId, publicToUuid, uuidToPublic } from '../storage/ids.js';
import type { KeelDatabase, WebhookDeliveryRow, WebhookEndpointRow } from '../storage/schema.js';
import { signWebhook } from './signature.js';

/**
 * Webhooks to merchants. The `webhooks` consumer turns each event into one delivery per subscribed endpoint
 * (de-duplicated through the inbox); the delivery job sends them signed, with a 10 s timeout, and retries any
 * non-2xx or timeout after 1, 4, 16, 64, 256, 1024 and 4096 minutes, then marks the delivery failed. Deliveries
 * are claimed with a lease under `FOR UPDATE SKIP LOCKED`, so several workers share them; each endpoint's
 * deliveries go one at a time while endpoints proceed in parallel, so a slow endpoint delays only itself.
 */
export const retryScheduleMinutes = [1, 4, 16, 64, 256, 1024, 4096] as const;
export const deliveryTimeoutMs = 10_000;
export const deliveryBatchSizeMax = 200;
export const deliveryLeaseSeconds = 60;

type Db = Kysely<KeelDatabase>;

export function endpointToApi(row: WebhookEndpointRow, secret?: string): Record<string, unknown> {
  return {
    id: uuidToPublic('webhookEndpoint', row.id),
    object: 'webhook_endpoint',
    url: row.url,
    events: row.events,
    ...(secret === undefined ? {} : { secret }),
    created_at: new Date(row.created_at).toISOString(),
  };
}

export function deliveryToApi(row: WebhookDeliveryRow): Record<string, unknown> {
  return {
    id: uuidToPublic('webhookDelivery', row.id),
    object: 'webhook_delivery',
    endpoint: uuidToPublic('webhookEndpoint', row.endpoint_id),
    event: uuidToPublic('event', row.event_id),
    event_type: row.event_type,
    status: row.status,
    attempts: row.attempts,
    next_attempt_at: row.next_attempt_at === null ? null : new Date(row.next_attempt_at).toISOString(),
    last_status_code: row.last_status_code,
    last_latency_ms: row.last_latency_ms,
    last_error: row.last_error,
    created_at: new Date(row.created_at).toISOString(),
  };
}

const loopbackHosts = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

/** Endpoints are https; in test mode, plain http to loopback is allowed too. */
export function checkEndpointUrl(url: string, livemode: boolean): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new KeelError('parameter_invalid', 'url must be an absolute URL.', { param: 'url' });
  }
  if (parsed.protocol === 'https:') return;
  if (!livemode && parsed.protocol === 'http:' && loopbackHosts.has(parsed.hostname)) return;
  throw new KeelError('parameter_invalid', livemode ? 'Live webhook endpoints must use https.' : 'Webhook endpoints must use https (or http to loopback in test mode).', { param: 'url' });
}

export async function createEndpoint(db: Db, cipher: FieldCipher, merchant: MerchantContext, url: string, events: readonly string[]): Promise<Record<string, unknown>> {
  checkEndpointUrl(url, merchant.livemode);
  const secret = `whsec_${randomBytes(24).toString('base64url')}`;
  const row = await db
    .insertInto('webhook_endpoints')
    .values({ id: newId('webhookEndpoint').uuid, merchant_id: merchant.id, url, events: JSON.stringify(events), secret_encrypted: cipher.encrypt(secret) })
    .returningAll()
    .executeTakeFirstOrThrow();
  return endpointToApi(row, secret);
}

function subscribed(endpoint: WebhookEndpointRow, type: string): boolean {
  return endpoint.events.includes('*') || endpoint.events.includes(type);
}

function payloadOf(event: KeelEvent): string {
  return JSON.stringify({ id: event.id, type: event.type, created_at: event.created_at, data: event.data });
}

/** The `webhooks` consumer: one pending delivery per subscribed endpoint, applied once per event. */
export function webhookConsumer(db: Db) {
  return deduplicated(db, 'webhooks', async (trx, event) => {
    const merchantId = publicToUuid('merchant', event.merchant);
    if (merchantId === undefined) return;
    const endpoints = await trx.selectFrom('webhook_endpoints').selectAll().where('merchant_id', '=', merchantId).execute();
    await insertDeliveries(trx, merchantId, event, endpoints.filter((endpoint) => subscribed(endpoint, event.type)));
  });
}

/** One pending delivery of the event, due now, to each of these endpoints. */
async function insertDeliveries(trx: Db, merchantId: string, event: KeelEvent, endpoints: readonly WebhookEndpointRow[]): Promise<void> {
  const eventId = publicToUuid('event', event.id);
  if (eventId === undefined || endpoints.length === 0) return;
  const payload = payloadOf(event);
  await trx
    .insertInto('webhook_deliveries')
    .values(
      endpoints.map((endpoint) => ({
        id: newId('webhookDelivery').uuid,
        merchant_id: merchantId,
        endpoint_id: endpoint.id,
        event_id: eventId,
        event_type: event.type,
        payload,
        status: 'pending' as const,
        next_attempt_at: new Date(),
      })),
    )
    .execute();
}

/** The merchant's event by its public id, from the outbox (which keeps every event). */
export async function findEvent(db: Db, merchantId: string, eventPublicId: string): Promise<KeelEvent | undefined> {
  const eventId = publicToUuid('event', eventPublicId);
  if (eventId === undefined) return undefined;
  const row = await db.selectFrom('outbox').selectAll().where('merchant_id', '=', merchantId).where('id', '=', eventId).executeTakeFirst();
  return row === undefined ? undefined : toKeelEvent(row);
}

export interface DeliveryDeps {
  readonly db: Db;
  readonly cipher: FieldCipher;
  readonly logger: Logger;
  readonly agent: Agent;
}

export function createDeliveryAgent(): Agent {
  return new Agent({ connect: { timeout: 5_000 }, headersTimeout: deliveryTimeoutMs, bodyTimeout: deliveryTimeoutMs, connections: 8 });
}

/** One round of the delivery job; returns how many deliveries it attempted. */
export async function runDeliveries(deps: DeliveryDeps): Promise<number> {
  const claimed = await sql<WebhookDeliveryRow>`
    UPDATE webhook_deliveries SET next_attempt_at = now() + make_interval(secs => ${deliveryLeaseSeconds}), updated_at = now()
    WHERE id IN (
      SELECT id FROM webhook_deliveries
      WHERE status = 'pending' AND next_attempt_at <= now()
      ORDER BY next_attempt_at LIMIT ${deliveryBatchSizeMax}
      FOR UPDATE SKIP LOCKED
    ) RETURNING *`.execute(deps.db);
  const byEndpoint = new Map<string, WebhookDeliveryRow[]>();
  for (const row of claimed.rows) byEndpoint.set(row.endpoint_id, [...(byEndpoint.get(row.endpoint_id) ?? []), row]);
  await Promise.all(
    [...byEndpoint.entries()].map(async ([endpointId, rows]) => {
      const endpoint = await deps.db.selectFrom('webhook_endpoints').selectAll().where('id', '=', endpointId).executeTakeFirst();
      if (endpoint === undefined) return;
      const secret = deps.cipher.decrypt(endpoint.secret_encrypted);
      // In event order (event ids are time-ordered), whichever order the consumers created the deliveries in.
      for (const row of rows.sort((a, b) => (a.event_id < b.event_id ? -1 : a.event_id > b.event_id ? 1 : 0))) await deliverOne(deps, endpoint, secret, row);
    }),
  );
  return claimed.rows.length;
}

async function deliverOne(deps: DeliveryDeps, endpoint: WebhookEndpointRow, secret: string, row: WebhookDeliveryRow): Promise<void> {
  const started = performance.now();
  let statusCode: number | null = null;
  let error: string | null = null;
  try {
    const response = await request(endpoint.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'keel-signature': signWebhook(row.payload, secret), 'user-agent': 'Keel-Webhooks/1' },
      body: row.payload,
      dispatcher: deps.agent,
    });
    statusCode = response.statusCode;
    await response.body.dump();
  } catch (caught) {
    error = (caught as { code?: string }).code ?? String(caught);
  }
  const latencyMs = Math.round(performance.now() - started);
  const attempts = row.attempts + 1;
  const succeeded = statusCode !== null && statusCode >= 200 && statusCode < 300;
  const retryMinutes = retryScheduleMinutes[attempts - 1];
  await deps.db
    .updateTable('webhook_deliveries')
    .set({
      attempts,
      status: succeeded ? 'succeeded' : retryMinutes === undefined ? 'failed' : 'pending',
      next_attempt_at: succeeded || retryMinutes === undefined ? null : new Date(Date.now() + retryMinutes * 60_000),
      last_status_code: statusCode,
      last_latency_ms: latencyMs,
      last_error: succeeded ? null : error ?? `HTTP ${statusCode}`,
      updated_at: new Date(),
    })
    .where('id', '=', row.id)
    .execute();
  deps.logger.info({ delivery_id: row.id, event_type: row.event_type, status_code: statusCode, latency_ms: latencyMs, attempts, succeeded }, 'webhook delivery');
}

/** Manual redelivery: every delivery of the event becomes due now (and endpoints subscribed since get one). */
export async function redeliver(db: Db, merchantId: string, eventPublicId: string): Promise<WebhookDeliveryRow[]> {
  const event = await findEvent(db, merchantId, eventPublicId);
  const eventId = publicToUuid('event', eventPublicId);
  if (event === undefined || eventId === undefined) throw new KeelError('resource_missing', `No such event: ${eventPublicId}.`, { param: 'id' });
  return db.transaction().execute(async (trx) => {
    const existing = await trx.selectFrom('webhook_deliveries').select('endpoint_id').where('event_id', '=', eventId).execute();
    const endpoints = await trx.selectFrom('webhook_endpoints').selectAll().where('merchant_id', '=', merchantId).execute();
    const missing = endpoints.filter((endpoint) => subscribed(endpoint, event.type) && !existing.some((row) => row.endpoint_id === endpoint.id));
    await insertDeliveries(trx, merchantId, event, missing);
    return trx
      .updateTable('webhook_deliveries')
      .set({ status: 'pending', next_attempt_at: new Date(), updated_at: new Date() })
      .where('event_id', '=', eventId)
      .where('merchant_id', '=', merchantId)
      .returningAll()
      .execute();
  });
}
