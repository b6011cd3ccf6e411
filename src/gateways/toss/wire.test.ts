// Proves the Toss Payments mapping on payloads in the shapes Toss documents: every payment status maps to a
// meaning, decline codes become Keel decline codes, and each HTTP answer class becomes the right outcome
// (2xx value, decline, 429 not processed, 5xx unknown, other 4xx rejected).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { mapAnswer } from './index.js';
import { isTossPayment, mapTossStatus, tossDeclineCode, tossPaymentStatuses, type TossPayment } from './wire.js';

const donePayment: TossPayment = {
  mId: 'tosspayments',
  paymentKey: '5zJ4xY7m0kODnyRpQWGrN2xqGlNvLrKwv1M9ENjbeoPaZdL6',
  orderId: 'a4CWyWY5m89PNh7xJwhk1',
  orderName: '토스 티셔츠 외 2건',
  status: 'DONE',
  totalAmount: 15000,
  balanceAmount: 15000,
  currency: 'KRW',
  method: '카드',
  requestedAt: '2024-02-13T12:17:57+09:00',
  approvedAt: '2024-02-13T12:18:14+09:00',
  card: { number: '43301234****123*', issuerCode: '71', cardType: '신용' },
  cancels: null,
  metadata: { keel_attempt: 'att_01HX' },
};

describe('Toss statuses', () => {
  test('every documented status has a meaning', () => {
    const meanings = Object.fromEntries(tossPaymentStatuses.map((status) => [status, mapTossStatus(status)]));
    assert.deepEqual(meanings, {
      READY: 'pending',
      IN_PROGRESS: 'pending',
      WAITING_FOR_DEPOSIT: 'pending',
      DONE: 'captured',
      CANCELED: 'canceled',
      PARTIAL_CANCELED: 'captured',
      ABORTED: 'failed',
      EXPIRED: 'failed',
    });
  });

  test('a payment payload is recognised; an error payload is not', () => {
    assert.equal(isTossPayment(donePayment), true);
    assert.equal(isTossPayment({ code: 'NOT_FOUND_PAYMENT', message: '존재하지 않는 결제 정보 입니다.' }), false);
    assert.equal(isTossPayment({ ...donePayment, status: 'SOMETHING_NEW' }), false);
  });

  test('issuer refusals are declines with Keel codes; other codes are not declines', () => {
    assert.equal(tossDeclineCode('REJECT_CARD_PAYMENT'), 'insufficient_funds');
    assert.equal(tossDeclineCode('REJECT_CARD_COMPANY'), 'card_declined');
    assert.equal(tossDeclineCode('INVALID_CARD_EXPIRATION'), 'expired_card');
    assert.equal(tossDeclineCode('INVALID_CARD_NUMBER'), 'incorrect_card');
    assert.equal(tossDeclineCode('UNAUTHORIZED_KEY'), undefined);
    assert.equal(tossDeclineCode('constructor'), undefined);
  });
});

describe('Toss answers', () => {
  const read = (body: unknown) => (body as TossPayment).paymentKey;

  test('200 with a payment is the value', () => {
    assert.deepEqual(mapAnswer({ kind: 'response', status: 200, body: donePayment }, read), { kind: 'ok', value: donePayment.paymentKey });
  });

  test('400 REJECT_CARD_PAYMENT is a decline', () => {
    const outcome = mapAnswer({ kind: 'response', status: 400, body: { code: 'REJECT_CARD_PAYMENT', message: '한도초과 혹은 잔액부족으로 결제에 실패했습니다.' } }, read);
    assert.deepEqual(outcome, { kind: 'declined', code: 'insufficient_funds', message: '한도초과 혹은 잔액부족으로 결제에 실패했습니다.' });
  });

  test('401 UNAUTHORIZED_KEY is a rejection, not a decline', () => {
    const outcome = mapAnswer({ kind: 'response', status: 401, body: { code: 'UNAUTHORIZED_KEY', message: '인증되지 않은 시크릿 키 혹은 클라이언트 키 입니다.' } }, read);
    assert.equal(outcome.kind, 'rejected');
  });

  test('429 was not processed; 409 IDEMPOTENT_REQUEST_PROCESSING and 5xx are unknown', () => {
    assert.equal(mapAnswer({ kind: 'response', status: 429, body: { code: 'TOO_MANY_REQUESTS', message: '' } }, read).kind, 'unreachable');
    assert.equal(mapAnswer({ kind: 'response', status: 409, body: { code: 'IDEMPOTENT_REQUEST_PROCESSING', message: '' } }, read).kind, 'unknown');
    assert.equal(mapAnswer({ kind: 'response', status: 500, body: { code: 'FAILED_INTERNAL_SYSTEM_PROCESSING', message: '' } }, read).kind, 'unknown');
    assert.equal(mapAnswer({ kind: 'response', status: 502, body: null }, read).kind, 'unknown');
  });

  test('a key reused with another body is unknown, not a refusal: the partner did something under that key', () => {
    assert.equal(mapAnswer({ kind: 'response', status: 422, body: { code: 'INVALID_IDEMPOTENCY_KEY', message: '' } }, read).kind, 'unknown');
  });

  test('transport outcomes pass through unchanged', () => {
    assert.deepEqual(mapAnswer({ kind: 'unreachable', reason: 'ECONNREFUSED' }, read), { kind: 'unreachable', reason: 'ECONNREFUSED' });
    assert.deepEqual(mapAnswer({ kind: 'unknown', reason: 'UND_ERR_HEADERS_TIMEOUT' }, read), { kind: 'unknown', reason: 'UND_ERR_HEADERS_TIMEOUT' });
  });
});
