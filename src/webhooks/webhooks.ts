import { randomBytes, randomUUID } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import type { Logger } from 'pino';
import { Agent, request } from 'undici';
import { KeelError } from '../errors.js';
import type { KeelEvent } from '../events/bus.js';
import { deduplicated, toKeelEvent } from '../events/relay.js';
import type { MerchantContext } from '../merchants/types.js';
import type { FieldCipher } from '../storage/encryption.js';
import { newId, publicToUuid, uuidToPublic } from '../storage/ids.js';
import { paged, type Page } from '../http/lists.js';
import type { KeelDatabase, WebhookDeliveryRow, WebhookEndpointRow } from '../storage/schema.js';
import { signWebhook } from './signature.js';
import { assertPublicHost, assertPublicLiteral, ForbiddenDestination, guardedLookup, hostOf } from './destination.js';

/**
 * Webhooks to merchants. The `webhooks` consumer turns each event into one delivery per subscribed endpoint
 * (de-duplicated through the inbox); the delivery job sends them signed, with a 10 s timeout, and retries any
 * non-2xx or timeout after 1, 4, 16, 64, 256, 1024 and 4096 minutes, then marks the delivery failed. Deliveries
 * are claimed one by one under a fenced lease with `FOR UPDATE SKIP LOCKED`, so several workers share them;
 * each endpoint has its own task in a worker, which sends its deliveries one at a time while other endpoints
 * proceed, so a slow, hanging or trickling endpoint delays only itself (and is cut off at the 10 s deadline).
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
    disabled: row.disabled,
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

/**
 * Endpoints are https. In test mode plain http to loopback is allowed too; in live mode the host must be public:
 * every address it resolves to now, and again at each delivery (`destination.ts`).
 */
export async function checkEndpointUrl(url: string, livemode: boolean): Promise<void> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new KeelError('parameter_invalid', 'url must be an absolute URL.', { param: 'url' });
  }
  if (!livemode) {
    if (parsed.protocol === 'https:') return;
    if (parsed.protocol === 'http:' && loopbackHosts.has(parsed.hostname)) return;
    throw new KeelError('parameter_invalid', 'Webhook endpoints must use https (or http to loopback in test mode).', { param: 'url' });
  }
  if (parsed.protocol !== 'https:') throw new KeelError('parameter_invalid', 'Live webhook endpoints must use https.', { param: 'url' });
  try {
    await assertPublicHost(hostOf(parsed));
  } catch (error) {
    if (error instanceof ForbiddenDestination) {
      throw new KeelError('parameter_invalid', `Live webhook endpoints must be on the public internet: ${error.message}.`, { param: 'url' });
    }
    // A name that does not resolve now is accepted: every delivery checks again where it leads.
  }
}

export async function createEndpoint(db: Db, cipher: FieldCipher, merchant: MerchantContext, url: string, events: readonly string[]): Promise<Record<string, unknown>> {
  await checkEndpointUrl(url, merchant.livemode);
  const secret = `whsec_${randomBytes(24).toString('base64url')}`;
  const row = await db
    .insertInto('webhook_endpoints')
    .values({ id: newId('webhookEndpoint').uuid, merchant_id: merchant.id, url, events: JSON.stringify(events), secret_encrypted: cipher.encrypt(secret) })
    .returningAll()
    .executeTakeFirstOrThrow();
  return endpointToApi(row, secret);
}

/** The merchant's endpoint by public id; deleted ones are missing (404). */
export async function endpointOr404(db: Db, merchantId: string, publicId: string): Promise<WebhookEndpointRow> {
  const id = publicToUuid('webhookEndpoint', publicId);
  const row = id === undefined ? undefined : await db.selectFrom('webhook_endpoints').selectAll().where('merchant_id', '=', merchantId).where('id', '=', id).where('deleted_at', 'is', null).executeTakeFirst();
  if (row === undefined) throw new KeelError('resource_missing', `No such webhook endpoint: ${publicId}.`, { param: 'id' });
  return row;
}

export async function listEndpoints(db: Db, merchantId: string, page: Page): Promise<WebhookEndpointRow[]> {
  return paged(db.selectFrom('webhook_endpoints').selectAll().where('merchant_id', '=', merchantId).where('deleted_at', 'is', null), page).execute();
}

export interface EndpointChanges {
  readonly url?: string | undefined;
  readonly events?: readonly string[] | undefined;
  readonly disabled?: boolean | undefined;
}

/** Changes an endpoint's URL (checked as at creation), events, or whether it is disabled; the secret stays. */
export async function updateEndpoint(db: Db, merchant: MerchantContext, publicId: string, changes: EndpointChanges): Promise<Record<string, unknown>> {
  const endpoint = await endpointOr404(db, merchant.id, publicId);
  if (changes.url !== undefined) await checkEndpointUrl(changes.url, merchant.livemode);
  const row = await db
    .updateTable('webhook_endpoints')
    .set({
      ...(changes.url === undefined ? {} : { url: changes.url }),
      ...(changes.events === undefined ? {} : { events: JSON.stringify(changes.events) }),
      ...(changes.disabled === undefined ? {} : { disabled: changes.disabled }),
    })
    .where('id', '=', endpoint.id)
    .returningAll()
    .executeTakeFirstOrThrow();
  return endpointToApi(row);
}

/** Deletes an endpoint: it gets no new deliveries and its pending ones fail at once ("endpoint deleted"). */
export async function deleteEndpoint(db: Db, merchantId: string, publicId: string): Promise<Record<string, unknown>> {
  const endpoint = await endpointOr404(db, merchantId, publicId);
  await db.transaction().execute(async (trx) => {
    await trx.updateTable('webhook_endpoints').set({ deleted_at: new Date() }).where('id', '=', endpoint.id).execute();
    await trx
      .updateTable('webhook_deliveries')
      // Clearing the lease drops the result of a send still in flight: a deleted endpoint's delivery stays failed.
      .set({ status: 'failed', next_attempt_at: null, lease_token: null, last_error: 'endpoint deleted', updated_at: new Date() })
      .where('endpoint_id', '=', endpoint.id)
      .where('status', '=', 'pending')
      .execute();
  });
  return { id: publicId, object: 'webhook_endpoint', deleted: true };
}

/** Endpoints that take new deliveries: neither disabled nor deleted. */
function receiving(endpoint: WebhookEndpointRow): boolean {
  return !endpoint.disabled && endpoint.deleted_at === null;
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
    await insertDeliveries(trx, merchantId, event, endpoints.filter((endpoint) => receiving(endpoint) && subscribed(endpoint, event.type)));
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

/** The public event object (`GET /v1/events/{id}`, the events list). */
export function eventToApi(event: KeelEvent): Record<string, unknown> {
  return { id: event.id, object: 'event', type: event.type, created_at: event.created_at, data: event.data };
}

/** A page of the merchant's events, newest first, of one type when given; what retention pruned is gone. */
export async function listEvents(db: Db, merchantId: string, type: string | undefined, page: Page): Promise<KeelEvent[]> {
  let query = db.selectFrom('outbox').selectAll().where('merchant_id', '=', merchantId);
  if (type !== undefined) query = query.where('type', '=', type);
  return (await paged(query, page).execute()).map(toKeelEvent);
}

/** The merchant's event by its public id, from the outbox (for as long as retention keeps it). */
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
  /** Test merchants' deliveries. */
  readonly agent: Agent;
  /** Live merchants' deliveries: every connection's addresses are checked (`destination.ts`). */
  readonly liveAgent: Agent;
  /** A delivery's whole budget, connection, headers and body included (default `deliveryTimeoutMs`). */
  readonly deadlineMs?: number;
  /** How long a claim holds a delivery (default `deliveryLeaseSeconds`). */
  readonly leaseSeconds?: number;
}

export function createDeliveryAgent(options: { live: boolean }): Agent {
  return new Agent({
    connect: { timeout: 5_000, ...(options.live ? { lookup: guardedLookup } : {}) },
    headersTimeout: deliveryTimeoutMs,
    bodyTimeout: deliveryTimeoutMs,
    connections: 8,
  });
}

/**
 * The delivery job. Each endpoint with deliveries due gets a task of its own that sends them one at a time,
 * in event order, until none is due; a tick starts a task for every such endpoint without one (up to
 * `endpointsInFlightMax`) and returns at once, so no endpoint waits for another's round. A delivery is claimed
 * under a lease (`next_attempt_at` moves `deliveryLeaseSeconds` ahead, `lease_token` names the holder): the
 * result is written only by the holder, and a holder that finds its lease too old to finish a send within it
 * gives the delivery up unsent, so an expired lease never sends twice.
 */
export const endpointsInFlightMax = 64;

export class DeliveryScheduler {
  readonly #deps: DeliveryDeps;
  readonly #inFlight = new Map<string, Promise<void>>();

  constructor(deps: DeliveryDeps) {
    this.#deps = deps;
  }

  /** Starts a task for each endpoint with deliveries due and none running here; returns how many started. */
  async tick(): Promise<number> {
    const room = endpointsInFlightMax - this.#inFlight.size;
    if (room <= 0) return 0;
    const due = await sql<{ endpoint_id: string }>`
      SELECT DISTINCT endpoint_id FROM (
        SELECT d.endpoint_id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
        WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND NOT e.disabled AND e.deleted_at IS NULL
        ORDER BY d.next_attempt_at LIMIT ${deliveryBatchSizeMax}
      ) AS due`.execute(this.#deps.db);
    let started = 0;
    for (const { endpoint_id: endpointId } of due.rows) {
      if (this.#inFlight.has(endpointId) || started >= room) continue;
      const task = this.#runEndpoint(endpointId)
        .catch((error: unknown) => this.#deps.logger.error({ err: error, endpoint_id: endpointId }, 'webhook endpoint task failed'))
        .finally(() => this.#inFlight.delete(endpointId));
      this.#inFlight.set(endpointId, task);
      started += 1;
    }
    return started;
  }

  /** Waits for every task running here (tests; shutdown). */
  async drain(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight.values()]);
  }

  /** One tick, then every task it started to its end; returns how many deliveries were attempted. */
  async runOnce(): Promise<number> {
    const before = this.#attempted;
    await this.tick();
    await this.drain();
    return this.#attempted - before;
  }

  #attempted = 0;

  async #runEndpoint(endpointId: string): Promise<void> {
    const { db } = this.#deps;
    const endpoint = await db
      .selectFrom('webhook_endpoints')
      .innerJoin('merchants', 'merchants.id', 'webhook_endpoints.merchant_id')
      .selectAll('webhook_endpoints')
      .select('merchants.livemode')
      .where('webhook_endpoints.id', '=', endpointId)
      .executeTakeFirst();
    if (endpoint === undefined || !receiving(endpoint)) return;
    const secret = this.#deps.cipher.decrypt(endpoint.secret_encrypted);
    const leaseSeconds = this.#deps.leaseSeconds ?? deliveryLeaseSeconds;
    for (;;) {
      const claimStarted = performance.now();
      const leaseToken = randomUUID();
      // The oldest event due first, whichever order the consumers created the deliveries in.
      const claimed = await sql<WebhookDeliveryRow>`
        UPDATE webhook_deliveries
        SET next_attempt_at = now() + make_interval(secs => ${leaseSeconds}), lease_token = ${leaseToken}, updated_at = now()
        WHERE id = (
          SELECT id FROM webhook_deliveries
          WHERE endpoint_id = ${endpointId} AND status = 'pending' AND next_attempt_at <= now()
          ORDER BY event_id LIMIT 1
          FOR UPDATE SKIP LOCKED
        ) RETURNING *`.execute(db);
      const row = claimed.rows[0];
      if (row === undefined) return;
      // The lease runs from before the claim was asked for; a send must end inside it.
      const deadlineMs = this.#deps.deadlineMs ?? deliveryTimeoutMs;
      if (performance.now() - claimStarted > leaseSeconds * 1_000 - deadlineMs - leaseMarginMs) {
        this.#deps.logger.warn({ delivery_id: row.id }, 'webhook delivery lease too old to send within; left for the next holder');
        return;
      }
      this.#attempted += 1;
      await deliverOne(this.#deps, endpoint, endpoint.livemode, secret, row, leaseToken, deadlineMs);
    }
  }
}

/** Time kept in hand between a send's deadline and the lease's end (clocks, the result's own write). */
const leaseMarginMs = 5_000;

async function deliverOne(
  deps: DeliveryDeps,
  endpoint: WebhookEndpointRow,
  livemode: boolean,
  secret: string,
  row: WebhookDeliveryRow,
  leaseToken: string,
  deadlineMs: number,
): Promise<void> {
  const started = performance.now();
  let statusCode: number | null = null;
  let error: string | null = null;
  // One deadline for the whole exchange: a receiver that trickles its headers or body is cut off at it.
  const deadline = AbortSignal.timeout(deadlineMs);
  try {
    const url = new URL(endpoint.url);
    // A literal address never goes through DNS, so it is checked here; a name is checked by the live agent's
    // lookup when the connection is made (the one resolution that decides where the request goes).
    if (livemode) assertPublicLiteral(hostOf(url));
    const response = await request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'keel-signature': signWebhook(row.payload, secret), 'user-agent': 'Keel-Webhooks/1' },
      body: row.payload,
      dispatcher: livemode ? deps.liveAgent : deps.agent,
      signal: deadline,
    });
    statusCode = response.statusCode;
    // The answer is not read, only drained (up to 64 KiB, then the connection is dropped).
    await response.body.dump({ limit: 65_536, signal: deadline });
  } catch (caught) {
    error = deadline.aborted ? 'deadline_exceeded' : (caught as { code?: string }).code ?? String(caught);
    if (deadline.aborted) statusCode = null;
  }
  const latencyMs = Math.round(performance.now() - started);
  const attempts = row.attempts + 1;
  const succeeded = statusCode !== null && statusCode >= 200 && statusCode < 300;
  const retryMinutes = retryScheduleMinutes[attempts - 1];
  const written = await deps.db
    .updateTable('webhook_deliveries')
    .set({
      attempts,
      status: succeeded ? 'succeeded' : retryMinutes === undefined ? 'failed' : 'pending',
      next_attempt_at: succeeded || retryMinutes === undefined ? null : new Date(Date.now() + retryMinutes * 60_000),
      last_status_code: statusCode,
      last_latency_ms: latencyMs,
      last_error: succeeded ? null : error ?? `HTTP ${statusCode}`,
      lease_token: null,
      updated_at: new Date(),
    })
    .where('id', '=', row.id)
    .where('lease_token', '=', leaseToken)
    .executeTakeFirst();
  if (written.numUpdatedRows === 0n) deps.logger.warn({ delivery_id: row.id }, 'webhook delivery result not written: the lease was taken over');
  deps.logger.info({ delivery_id: row.id, event_type: row.event_type, status_code: statusCode, latency_ms: latencyMs, attempts, succeeded, error }, 'webhook delivery');
}

/** Manual redelivery: every delivery of the event becomes due now (and endpoints subscribed since get one). */
export async function redeliver(db: Db, merchantId: string, eventPublicId: string): Promise<WebhookDeliveryRow[]> {
  const event = await findEvent(db, merchantId, eventPublicId);
  const eventId = publicToUuid('event', eventPublicId);
  if (event === undefined || eventId === undefined) throw new KeelError('resource_missing', `No such event: ${eventPublicId}.`, { param: 'id' });
  return db.transaction().execute(async (trx) => {
    const existing = await trx.selectFrom('webhook_deliveries').select('endpoint_id').where('event_id', '=', eventId).execute();
    const endpoints = await trx.selectFrom('webhook_endpoints').selectAll().where('merchant_id', '=', merchantId).where('deleted_at', 'is', null).execute();
    const missing = endpoints.filter((endpoint) => subscribed(endpoint, event.type) && !existing.some((row) => row.endpoint_id === endpoint.id));
    await insertDeliveries(trx, merchantId, event, missing);
    return trx
      .updateTable('webhook_deliveries')
      .set({ status: 'pending', next_attempt_at: new Date(), updated_at: new Date() })
      .where('event_id', '=', eventId)
      .where('merchant_id', '=', merchantId)
      .where('endpoint_id', 'in', trx.selectFrom('webhook_endpoints').select('id').where('merchant_id', '=', merchantId).where('deleted_at', 'is', null))
      .returningAll()
      .execute();
  });
}
