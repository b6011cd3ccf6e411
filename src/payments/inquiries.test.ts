// Proves the rules by which Keel asks a partner about an attempt whose answer was lost: inquiries back off from
// 1 s doubling, and never come before the consistency window ends when the partner showed nothing; a "not found"
// is believed only from an inquiry made past that window; an attempt is sent again only while the partner still
// keeps its idempotency key; an intent found canceled before any capture is a decline, never an authorization.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Connector, InquiryResult, PartnerOutcome } from '../gateways/connector.js';
import type { GatewayRegistry } from '../gateways/registry.js';
import { startTestKeel, testCard, testConsistencyWindowMs, uniqueKey, type TestKeel } from '../testing/harness.js';
import { inquireAuthorize } from './operations/authorize.js';
import type { OperationContext } from './operations/context.js';
import { absentOrUnknown, canResend, resendMarginMs, resendRoundsMax } from './operations/steps.js';
import type { Attempt, Payment } from './types.js';

const attempt = (overrides: Partial<Attempt> = {}): Attempt => ({
  id: '01a2338a-154d-7726-954f-36522602e229',
  merchantId: 'm',
  paymentId: 'p',
  refundId: null,
  gateway: 'stripe',
  operation: 'authorize',
  status: 'unknown',
  amount: 1000n,
  partnerIdempotencyKey: 'keel_att_1',
  partnerPaymentId: null,
  partnerTokenEncrypted: null,
  inquiryCount: 0,
  sourceFingerprint: null,
  reason: null,
  lastSentAt: new Date('2026-12-01T00:00:00Z'),
  createdAt: new Date('2026-12-01T00:00:00Z'),
  ...overrides,
});

/** A context whose only partner answers every inquiry with `found`. */
function contextAnswering(found: InquiryResult): OperationContext {
  const connector = {
    name: 'stripe',
    idempotencyKeyRetentionMs: 24 * 3_600_000,
    inquire: async (): Promise<PartnerOutcome<InquiryResult>> => ({ kind: 'ok', value: found }),
  } as unknown as Connector;
  const gateways = { connector: () => connector } as unknown as GatewayRegistry;
  return {
    deps: { gateways, consistencyWindowMs: { toss: 600_000, stripe: 3_600_000 } } as unknown as OperationContext['deps'],
    merchant: { id: 'm', country: 'US', partners: [{ gateway: 'stripe', partnerSecretKey: 'sk_test_x' }], livemode: false, rateLimit: null },
    key: null,
  };
}

describe('the rules, on their own', () => {
  test('a "not found" is believed only from an inquiry made past the partner\'s consistency window', () => {
    const context = contextAnswering({ state: 'absent' });
    const sent = attempt();
    const windowEnds = sent.lastSentAt.getTime() + 3_600_000;
    assert.deepEqual(absentOrUnknown(context, sent, windowEnds - 1), {
      kind: 'unknown',
      reason: 'the partner shows no record yet, which may be lag',
      askAgainAfter: new Date(windowEnds),
    });
    assert.deepEqual(absentOrUnknown(context, sent, windowEnds), { kind: 'absent_confirmed' });
  });

  test('an attempt is sent again only while the partner keeps its key, with a margin, and for a bounded number of rounds', () => {
    const context = contextAnswering({ state: 'absent' });
    const created = attempt().createdAt.getTime();
    const lastMoment = created + 24 * 3_600_000 - resendMarginMs;
    assert.equal(canResend(context, attempt(), lastMoment - 1), true);
    assert.equal(canResend(context, attempt(), lastMoment), false);
    assert.equal(canResend(context, attempt({ inquiryCount: resendRoundsMax }), created), false, 'after unanswered resends, Keel inquires');
  });

  test('an intent found canceled before any capture is a decline; one found authorized is an authorization', async () => {
    const payment = { orderId: 'ord', partnerPaymentId: null } as unknown as Payment;
    const canceled = await inquireAuthorize(contextAnswering({ state: 'succeeded', partnerPaymentId: 'pi_1', captured: false, canceled: true }), attempt(), payment);
    assert.equal(canceled.kind, 'declined');
    const authorized = await inquireAuthorize(contextAnswering({ state: 'succeeded', partnerPaymentId: 'pi_1', captured: false, canceled: false }), attempt(), payment);
    assert.deepEqual(authorized, { kind: 'approved', value: { partnerPaymentId: 'pi_1', captured: false, token: null, card: null } });
  });
});

describe('the janitor\'s schedule', () => {
  let keel: TestKeel;
  before(async () => {
    keel = await startTestKeel();
  });
  after(async () => {
    await keel.close();
  });

  const nextInquiryIn = async (orderId: string): Promise<{ seconds: number; count: number }> => {
    const row = await keel.keel.database.db
      .selectFrom('payment_attempts')
      .innerJoin('payments', 'payments.id', 'payment_attempts.payment_id')
      .select(['payment_attempts.next_inquiry_at', 'payment_attempts.inquiry_count'])
      .where('payments.order_id', '=', orderId)
      .executeTakeFirstOrThrow();
    return { seconds: (new Date(row.next_inquiry_at ?? 0).getTime() - Date.now()) / 1000, count: row.inquiry_count };
  };
  const janitorNow = async () => {
    await keel.keel.database.db.updateTable('payment_attempts').set({ next_inquiry_at: new Date() }).where('status', '=', 'unknown').execute();
    await keel.keel.jobs.janitor();
  };

  test('a partner showing nothing is asked again only when the window ends', async () => {
    const body = { amount: 1000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: testCard('4000000000000119'), confirm: true };
    assert.equal((await keel.request('POST', '/v1/payments', { body })).status, 202);
    await janitorNow();
    const { seconds } = await nextInquiryIn(body.order_id);
    assert.ok(Math.abs(seconds - testConsistencyWindowMs / 1000) < 3, `next inquiry in ${seconds} s`);
  });

  test('a partner that does not answer is asked again after 1, 2, then 4 seconds', async () => {
    const body = { amount: 1000, currency: 'KRW', order_id: uniqueKey('ord'), payment_method: testCard('4000000000000259'), confirm: true };
    assert.equal((await keel.request('POST', '/v1/payments', { body })).status, 202);
    await fetch(`${keel.keel.gatewayUrl}/__sim/faults`, { method: 'POST', body: JSON.stringify({ mode: 'outage', duration_s: 60 }) });
    try {
      const delays: number[] = [];
      for (let round = 0; round < 3; round += 1) {
        await janitorNow();
        delays.push(Math.round((await nextInquiryIn(body.order_id)).seconds));
      }
      assert.deepEqual(delays, [1, 2, 4]);
      assert.equal((await nextInquiryIn(body.order_id)).count, 3);
    } finally {
      await fetch(`${keel.keel.gatewayUrl}/__sim/faults`, { method: 'DELETE' });
    }
  });
});
