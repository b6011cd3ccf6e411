// Proves the breaker on a controlled clock: it opens on an error rate (at least minimumCalls calls in the
// window, at least failureRatePercent of them failed), not on a low rate however many calls fail, nor on a
// high rate over too few calls, nor on calls that aged out of the window; it refuses while open, turns
// half-open after the open timeout, closes after the success threshold, and reopens on any half-open error
// (Semian's semantics); every change is reported.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CircuitBreaker, type BreakerState } from './breaker.js';

const options = { minimumCalls: 4, failureRatePercent: 50, windowMs: 1_000, errorTimeoutMs: 5_000, successThreshold: 2, halfOpenReadTimeoutMs: 100 };

function harness() {
  let now = 1_000_000;
  const changes: string[] = [];
  const breaker = new CircuitBreaker('toss:sim:4100:KR', options, (_resource, from: BreakerState, to: BreakerState) => changes.push(`${from}->${to}`), () => now);
  return { breaker, changes, advance: (ms: number) => (now += ms) };
}

function open(breaker: CircuitBreaker): void {
  for (let index = 0; index < options.minimumCalls; index += 1) breaker.recordError();
  assert.equal(breaker.state, 'open');
}

test('opens at the failure rate once the window holds the minimum calls', () => {
  const { breaker, changes } = harness();
  breaker.recordSuccess();
  breaker.recordError();
  breaker.recordSuccess();
  assert.equal(breaker.state, 'closed', 'three calls: below the minimum');
  breaker.recordError();
  assert.equal(breaker.state, 'open', 'four calls, two failed: 50%');
  assert.deepEqual(changes, ['closed->open']);
});

test('a partial failure below the rate never opens it, however many calls fail', () => {
  const { breaker, advance } = harness();
  for (let index = 0; index < 1_000; index += 1) {
    if (index % 10 === 0) breaker.recordError();
    else breaker.recordSuccess();
    advance(3);
  }
  assert.equal(breaker.state, 'closed', '100 errors at 10%');
  assert.ok(breaker.snapshot().calls_in_window >= 300, "a window of 900-1000 ms of calls every 3 ms");
});

test('too few calls never open it, even all failing; calls age out of the window', () => {
  const few = harness();
  for (let index = 0; index < options.minimumCalls - 1; index += 1) few.breaker.recordError();
  assert.equal(few.breaker.state, 'closed');
  const aged = harness();
  aged.breaker.recordError();
  aged.breaker.recordError();
  aged.breaker.recordError();
  aged.advance(options.windowMs + 1);
  aged.breaker.recordError();
  assert.equal(aged.breaker.state, 'closed', 'the first three errors left the window');
  assert.deepEqual([aged.breaker.snapshot().calls_in_window, aged.breaker.snapshot().errors_in_window], [1, 1]);
});

test('refuses while open, with the time until half-open', () => {
  const { breaker, advance } = harness();
  open(breaker);
  advance(2_000);
  const permit = breaker.acquire();
  assert.equal(permit.allowed, false);
  assert.equal(permit.allowed === false ? permit.retryAfterMs : 0, 3_000);
  assert.equal(breaker.snapshot().next_half_open_at, new Date(1_000_000 + 5_000).toISOString());
});

test('half-open after the open timeout; closes after successThreshold successes', () => {
  const { breaker, changes, advance } = harness();
  open(breaker);
  advance(5_000);
  const permit = breaker.acquire();
  assert.deepEqual(permit, { allowed: true, halfOpen: true });
  breaker.recordSuccess();
  assert.equal(breaker.state, 'half_open');
  breaker.recordSuccess();
  assert.equal(breaker.state, 'closed');
  assert.deepEqual(changes, ['closed->open', 'open->half_open', 'half_open->closed']);
  assert.deepEqual(breaker.acquire(), { allowed: true, halfOpen: false });
});

test('any error while half-open opens it again for a full open timeout', () => {
  const { breaker, changes, advance } = harness();
  open(breaker);
  advance(5_000);
  breaker.acquire();
  breaker.recordSuccess();
  breaker.recordError();
  assert.equal(breaker.state, 'open');
  advance(4_999);
  assert.equal(breaker.acquire().allowed, false);
  advance(1);
  assert.equal(breaker.acquire().allowed, true);
  assert.deepEqual(changes, ['closed->open', 'open->half_open', 'half_open->open', 'open->half_open']);
});

test('calls before a close do not count after it', () => {
  const { breaker, advance } = harness();
  open(breaker);
  advance(5_000);
  breaker.acquire();
  breaker.recordSuccess();
  breaker.recordSuccess();
  breaker.recordError();
  breaker.recordError();
  assert.equal(breaker.state, 'closed');
  assert.equal(breaker.snapshot().errors_in_window, 2);
});
