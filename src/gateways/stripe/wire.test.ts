// Proves the Stripe mapping on payloads in the shapes Stripe documents: every PaymentIntent status maps,
// card_error declines carry Keel decline codes, api_error and 5xx are unknown outcomes, and the form encoding
// of nested parameters round-trips through the benchmark gateway's parser.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseStripeForm } from '../../simulator/server.js';
import { interpretIntent, mapStripeAnswer } from './index.js';
import { mapStripeStatus, stripeDeclineCode, stripeIntentStatuses, toStripeForm, type StripePaymentIntent } from './wire.js';

const intent: StripePaymentIntent = {
  id: 'pi_3MtwBwLkdIwHu7ix28a3tqPa',
  object: 'payment_intent',
  amount: 2000,
  amount_capturable: 0,
  amount_received: 2000,
  currency: 'usd',
  status: 'succeeded',
  capture_method: 'automatic',
  latest_charge: 'ch_3MtwBwLkdIwHu7ix28a3tqPa',
  metadata: { order_id: 'ord_1', keel_attempt: 'att_1' },
  last_payment_error: null,
  payment_method: 'pm_1MtwBwLkdIwHu7ixkUzyMwVV',
};

describe('Stripe statuses', () => {
  test('every documented PaymentIntent status has a meaning', () => {
    assert.deepEqual(Object.fromEntries(stripeIntentStatuses.map((status) => [status, mapStripeStatus(status)])), {
      requires_payment_method: 'needs_payment_method',
      requires_confirmation: 'needs_payment_method',
      requires_action: 'needs_authentication',
      processing: 'pending',
      requires_capture: 'authorized',
      canceled: 'canceled',
      succeeded: 'captured',
    });
  });

  test('an inquiry reads captured, authorized, declined and pending intents', () => {
    assert.deepEqual(interpretIntent(intent), { state: 'succeeded', partnerPaymentId: intent.id, captured: true, canceled: false });
    assert.deepEqual(interpretIntent({ ...intent, status: 'requires_capture' }), { state: 'succeeded', partnerPaymentId: intent.id, captured: false, canceled: false });
    assert.deepEqual(interpretIntent({ ...intent, status: 'processing' }), { state: 'pending' });
    const declined = interpretIntent({
      ...intent,
      status: 'requires_payment_method',
      last_payment_error: { type: 'card_error', code: 'card_declined', decline_code: 'insufficient_funds', message: 'Your card has insufficient funds.' },
    });
    assert.deepEqual(declined, { state: 'declined', code: 'insufficient_funds', message: 'Your card has insufficient funds.' });
    assert.deepEqual(interpretIntent({ ...intent, status: 'requires_payment_method' }), { state: 'absent' }, 'no attempt made yet: nothing to show');
    assert.equal((interpretIntent({ ...intent, status: 'requires_action' }) as { code?: string }).code, 'card_authentication_required');
  });

  test('decline codes map onto Keel decline codes', () => {
    assert.equal(stripeDeclineCode({ type: 'card_error', code: 'card_declined', decline_code: 'generic_decline', message: '' }), 'card_declined');
    assert.equal(stripeDeclineCode({ type: 'card_error', code: 'expired_card', message: '' }), 'expired_card');
    assert.equal(stripeDeclineCode({ type: 'card_error', code: 'incorrect_cvc', message: '' }), 'incorrect_card');
  });
});

describe('Stripe answers', () => {
  const read = (body: unknown) => (body as StripePaymentIntent).id;

  test('402 card_error is a decline, never an error', () => {
    const outcome = mapStripeAnswer(
      { kind: 'response', status: 402, body: { error: { type: 'card_error', code: 'card_declined', decline_code: 'insufficient_funds', message: 'Your card has insufficient funds.' } } },
      read,
    );
    assert.deepEqual(outcome, { kind: 'declined', code: 'insufficient_funds', message: 'Your card has insufficient funds.' });
  });

  test('500 api_error is unknown; 429 was not processed; any idempotency_error is unknown (the partner knows the key); 400 is rejected', () => {
    assert.equal(mapStripeAnswer({ kind: 'response', status: 400, body: { error: { type: 'idempotency_error', message: 'Keys for idempotent requests can only be used with the same parameters' } } }, read).kind, 'unknown');
    assert.equal(mapStripeAnswer({ kind: 'response', status: 500, body: { error: { type: 'api_error', message: 'x' } } }, read).kind, 'unknown');
    assert.equal(mapStripeAnswer({ kind: 'response', status: 429, body: { error: { type: 'rate_limit_error', message: 'x' } } }, read).kind, 'unreachable');
    assert.equal(mapStripeAnswer({ kind: 'response', status: 409, body: { error: { type: 'idempotency_error', message: 'x' } } }, read).kind, 'unknown');
    assert.equal(mapStripeAnswer({ kind: 'response', status: 400, body: { error: { type: 'invalid_request_error', message: 'x' } } }, read).kind, 'rejected');
    assert.deepEqual(mapStripeAnswer({ kind: 'response', status: 200, body: intent }, read), { kind: 'ok', value: intent.id });
  });

  test('nested parameters are form-encoded the Stripe way and parse back', () => {
    const form = toStripeForm({ amount: '2000', payment_method_data: { type: 'card', card: { number: '4242424242424242' } }, metadata: { order_id: 'o 1' } });
    assert.equal(form, 'amount=2000&payment_method_data%5Btype%5D=card&payment_method_data%5Bcard%5D%5Bnumber%5D=4242424242424242&metadata%5Border_id%5D=o+1');
    assert.deepEqual(parseStripeForm(form), { amount: '2000', payment_method_data: { type: 'card', card: { number: '4242424242424242' } }, metadata: { order_id: 'o 1' } });
    assert.deepEqual(parseStripeForm('__proto__%5Bpolluted%5D=1&a=2'), { a: '2' });
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  });
});
