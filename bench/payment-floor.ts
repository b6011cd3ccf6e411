import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import Fastify from 'fastify';
import pg from 'pg';
import { partnerHttpDefaults, PartnerHttpClient } from '../src/gateways/http.js';
import { createTossConnector } from '../src/gateways/toss/index.js';
import { startSimulator } from '../src/simulator/server.js';
import { newId, publicToUuid, uuidv7 } from '../src/storage/ids.js';

/**
 * The payment floor: a minimal correct card payment written by hand on Keel's own schema, through Fastify, the
 * same in-process benchmark gateway and the same Toss connector Keel uses — the cost a payment cannot go below.
 *
 * - Phase 1, one statement and one commit: the idempotency key (inserted already at its `attempt_created`
 *   point, naming the payment and the attempt), the payment, its `pending` attempt and `payment.created` in the
 *   outbox. A key that exists inserts nothing at all (409 here: the floor has no replay path).
 * - Phase 2: the partner call, outside any transaction, under the attempt's own partner idempotency key.
 * - Phase 3, one statement and one commit: the attempt and the payment moved only from the states phase 1 left
 *   (guarded `UPDATE … WHERE status = …`), the capture's ledger transaction and entries, `payment.succeeded`,
 *   and the stored response on the key, fenced by its lock token; `keel_assert` aborts the statement, every
 *   CTE with it, when a guard missed.
 *
 * Both statements are prepared (named), so PostgreSQL parses and plans each once per connection.
 */

const createdSql = `
WITH key AS (
  INSERT INTO idempotency_keys (merchant_id, key, request_method, request_path, request_hash, recovery_point, locked_at, lock_token, payment_id, attempt_id, correlation_id)
  VALUES ($1, $2, 'POST', '/v1/payments', $3, 'attempt_created', now(), $4, $5, $6, $7)
  ON CONFLICT (merchant_id, key) DO NOTHING
  RETURNING id
), payment AS (
  INSERT INTO payments (id, merchant_id, order_id, amount, currency, country, status, capture_method, gateway, metadata, correlation_id)
  SELECT $5, $1, $8, $9, $10, 'KR', 'requires_confirmation', 'automatic', 'toss', '{}', $7 FROM key
  RETURNING id
), attempt AS (
  INSERT INTO payment_attempts (id, merchant_id, payment_id, operation, status, amount, partner_idempotency_key, gateway, correlation_id)
  SELECT $6, $1, id, 'authorize', 'pending', $9, $11, 'toss', $7 FROM payment
  RETURNING id
), event AS (
  INSERT INTO outbox (id, merchant_id, type, aggregate_id, data, correlation_id)
  SELECT $12, $1, 'payment.created', id, $13, $7 FROM payment
)
SELECT (SELECT id FROM key) AS key_id, (SELECT id FROM attempt) AS attempt_id`;

const succeededSql = `
WITH attempt AS (
  UPDATE payment_attempts SET status = 'succeeded', partner_payment_id = $3, updated_at = now()
  WHERE id = $2 AND status = 'pending'
  RETURNING id
), payment AS (
  UPDATE payments SET status = 'succeeded', amount_received = amount, partner_payment_id = $3, updated_at = now()
  WHERE id = $1 AND merchant_id = $4 AND status = 'requires_confirmation' AND EXISTS (SELECT 1 FROM attempt)
  RETURNING id, amount, currency
), journal AS (
  INSERT INTO ledger_transactions (id, merchant_id, kind, payment_id)
  SELECT $5, $4, 'capture', id FROM payment
  RETURNING id
), entries AS (
  INSERT INTO ledger_entries (transaction_id, merchant_id, account, currency, amount)
  SELECT journal.id, $4, posting.account, payment.currency, posting.sign * payment.amount
  FROM journal, payment, (VALUES ('partner_receivable:toss', 1), ('merchant_pending', -1)) AS posting (account, sign)
), event AS (
  INSERT INTO outbox (id, merchant_id, type, aggregate_id, data, correlation_id)
  SELECT $6, $4, 'payment.succeeded', id, $7, $8 FROM payment
), key AS (
  UPDATE idempotency_keys SET recovery_point = 'finished', response_status = 200, response_body = $9, locked_at = NULL, lock_token = NULL, updated_at = now()
  WHERE id = $10 AND lock_token = $11 AND EXISTS (SELECT 1 FROM payment)
  RETURNING id
)
SELECT keel_assert(EXISTS (SELECT 1 FROM key), 'payment, attempt and key as phase 1 left them') AS ok`;

export interface PaymentFloor {
  readonly url: string;
  /** Statements sent (each one round trip and, outside a transaction, one commit). */
  readonly statements: () => number;
  /** Asserts the floor's invariants over everything it answered; resolves to the payments checked. */
  verify(): Promise<number>;
  close(): Promise<void>;
}

interface Body {
  readonly amount: number;
  readonly currency: string;
  readonly order_id: string;
  readonly payment_method: { readonly card: { readonly number: string; readonly exp_month: number; readonly exp_year: number; readonly cvc: string } };
}

export async function startPaymentFloor(options: { readonly databaseUrl: string; readonly schema: string; /** The merchant's public id. */ readonly merchantId: string; readonly poolSize: number; /** This run's orders start with it (runs share the merchant). */ readonly orderPrefix: string }): Promise<PaymentFloor> {
  const pool = new pg.Pool({ connectionString: options.databaseUrl, max: options.poolSize, options: `-c search_path=${options.schema}` });
  const simulator = await startSimulator({ port: 0 });
  const toss = createTossConnector(new PartnerHttpClient(simulator.url, partnerHttpDefaults));
  const merchantId = publicToUuid('merchant', options.merchantId);
  assert.ok(merchantId !== undefined, 'a merchant id');
  let statements = 0;
  const query = (name: string, text: string, values: unknown[]) => {
    statements += 1;
    return pool.query({ name, text, values });
  };
  const app = Fastify({ logger: false });
  app.post<{ Body: Body }>('/v1/payments', async (request, reply) => {
    const key = request.headers['idempotency-key'];
    if (typeof key !== 'string') return reply.status(400).send({ error: { code: 'idempotency_key_missing' } });
    const body = request.body;
    const payment = newId('payment');
    const attempt = newId('attempt');
    const lockToken = randomUUID();
    const correlationId = randomUUID();
    const object = { id: payment.publicId, object: 'payment', amount: body.amount, currency: body.currency, order_id: body.order_id, status: 'requires_confirmation' };
    const hash = createHash('sha256').update(JSON.stringify(body)).digest('hex');
    const created = await query('floor_payment_created', createdSql, [
      merchantId,
      key,
      hash,
      lockToken,
      payment.uuid,
      attempt.uuid,
      correlationId,
      body.order_id,
      body.amount,
      body.currency,
      `keel_${attempt.publicId}`,
      newId('event').uuid,
      JSON.stringify({ object }),
    ]);
    const keyId = created.rows[0]?.key_id as string | null;
    if (keyId === null || keyId === undefined) return reply.status(409).send({ error: { code: 'idempotency_key_in_use' } });
    const { card } = body.payment_method;
    const outcome = await toss.authorize(
      { partnerSecretKey: 'test_sk_payment_floor', livemode: false, country: 'KR', idempotencyKey: `keel_${attempt.publicId}`, correlationId },
      {
        attemptId: attempt.publicId,
        orderId: body.order_id,
        orderName: body.order_id,
        amount: BigInt(body.amount),
        currency: body.currency,
        captureMethod: 'automatic',
        customerKey: `keel_${options.merchantId}`,
        source: { card: { number: card.number, expMonth: card.exp_month, expYear: card.exp_year, cvc: card.cvc } },
      },
    );
    // The floor measures the approved path; anything else is left as phase 1 wrote it, and answered 502.
    if (outcome.kind !== 'ok') return reply.status(502).send({ error: { code: 'gateway_error', outcome: outcome.kind } });
    const succeeded = { ...object, status: 'succeeded', amount_received: body.amount };
    await query('floor_payment_succeeded', succeededSql, [
      payment.uuid,
      attempt.uuid,
      outcome.value.partnerPaymentId,
      merchantId,
      uuidv7(),
      newId('event').uuid,
      JSON.stringify({ object: succeeded }),
      correlationId,
      JSON.stringify(succeeded),
      keyId,
      lockToken,
    ]);
    return succeeded;
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return {
    url,
    statements: () => statements,
    async verify() {
      // One charge per order at the partner, for the amount asked; every payment succeeded with its attempt, its
      // key finished, two balanced ledger entries and both events.
      const charges = (await (await fetch(`${simulator.url}/__sim/charges`)).json()) as { data: { order_id: string; amount: number; status: string }[] };
      const byOrder = new Map<string, number>();
      for (const charge of charges.data) byOrder.set(charge.order_id, (byOrder.get(charge.order_id) ?? 0) + 1);
      const { rows } = await pool.query<{ order_id: string; amount: string; status: string; attempts: string; succeeded: string; keys: string; entries: string; balance: string; events: string }>(
        // Counted per table in one pass each (hash joins), not per payment: the merchant's tables hold every
        // earlier run's rows too.
        `WITH p AS (
           SELECT id, order_id, amount, status FROM payments WHERE merchant_id = $1 AND correlation_id IS NOT NULL AND order_id LIKE $2
         ), a AS (
           SELECT payment_id, count(*) AS attempts, count(*) FILTER (WHERE status = 'succeeded') AS succeeded FROM payment_attempts WHERE payment_id IN (SELECT id FROM p) GROUP BY payment_id
         ), k AS (
           SELECT payment_id, count(*) AS keys FROM idempotency_keys WHERE payment_id IN (SELECT id FROM p) AND recovery_point = 'finished' GROUP BY payment_id
         ), e AS (
           SELECT t.payment_id, count(*) AS entries, sum(e.amount) AS balance FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id WHERE t.payment_id IN (SELECT id FROM p) GROUP BY t.payment_id
         ), o AS (
           SELECT aggregate_id, count(*) AS events FROM outbox WHERE aggregate_id IN (SELECT id FROM p) GROUP BY aggregate_id
         )
         SELECT p.order_id, p.amount, p.status, coalesce(a.attempts, 0) AS attempts, coalesce(a.succeeded, 0) AS succeeded, coalesce(k.keys, 0) AS keys,
           coalesce(e.entries, 0) AS entries, coalesce(e.balance, 0) AS balance, coalesce(o.events, 0) AS events
         FROM p LEFT JOIN a ON a.payment_id = p.id LEFT JOIN k ON k.payment_id = p.id LEFT JOIN e ON e.payment_id = p.id LEFT JOIN o ON o.aggregate_id = p.id`,
        [merchantId, `${options.orderPrefix}%`],
      );
      for (const row of rows) {
        assert.equal(byOrder.get(row.order_id) ?? 0, row.status === 'succeeded' ? 1 : 0, `order ${row.order_id}: one charge at the partner`);
        if (row.status !== 'succeeded') continue;
        assert.deepEqual([row.attempts, row.succeeded, row.keys, row.entries, row.balance, row.events], ['1', '1', '1', '2', '0', '2'], `payment of order ${row.order_id} is consistent`);
      }
      assert.ok(rows.length > 0, 'the floor made payments');
      return rows.length;
    },
    async close() {
      await app.close();
      await simulator.close();
      await pool.end();
    },
  };
}
