// Proves the breaker's Semian semantics on a controlled clock: it opens at the error threshold inside the
// window (and not when errors are spread wider), refuses while open, turns half-open after the open timeout,
// closes after the success threshold, and reopens on any half-open error; every change is reported.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CircuitBreaker, type BreakerState } from './breaker.js';

const options = { errorThreshold: 3, errorThresholdTimeoutMs: 1_000, errorTimeoutMs: 5_000, successThreshold: 2, halfOpenReadTimeoutMs: 100 };

function harness() {
  let now = 1_000_000;
  const changes: string[] = [];
  const breaker = new CircuitBreaker('sim:4100:KR', options, (_resource, from: BreakerState, to: BreakerState) => changes.push(`${from}->${to}`), () => now);
  return { breaker, changes, advance: (ms: number) => (now += ms) };
}

test('opens after errorThreshold errors within the window, not when they are spread wider', () => {
  const spread = harness();
  for (let index = 0; index < 5; index += 1) {
    spread.breaker.recordError();
    spread.advance(600);
  }
  assert.equal(spread.breaker.state, 'closed', 'two errors at most in any 1 s window');
  const burst = harness();
  burst.breaker.recordError();
  burst.breaker.recordError();
  assert.equal(burst.breaker.state, 'closed');
  burst.breaker.recordError();
  assert.equal(burst.breaker.state, 'open');
  assert.deepEqual(burst.changes, ['closed->open']);
});

test('refuses while open, with the time until half-open', () => {
  const { breaker, advance } = harness();
  for (let index = 0; index < 3; index += 1) breaker.recordError();
  advance(2_000);
  const permit = breaker.acquire();
  assert.equal(permit.allowed, false);
  assert.equal(permit.allowed === false ? permit.retryAfterMs : 0, 3_000);
  assert.equal(breaker.snapshot().next_half_open_at, new Date(1_000_000 + 5_000).toISOString());
});

test('half-open after the open timeout; closes after successThreshold successes', () => {
  const { breaker, changes, advance } = harness();
  for (let index = 0; index < 3; index += 1) breaker.recordError();
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
  for (let index = 0; index < 3; index += 1) breaker.recordError();
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

test('errors before the window do not count after a close', () => {
  const { breaker, advance } = harness();
  for (let index = 0; index < 3; index += 1) breaker.recordError();
  advance(5_000);
  breaker.acquire();
  breaker.recordSuccess();
  breaker.recordSuccess();
  breaker.recordError();
  breaker.recordError();
  assert.equal(breaker.state, 'closed');
  assert.equal(breaker.snapshot().errors_in_window, 2);
});
