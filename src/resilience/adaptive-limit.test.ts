// Proves the adaptive concurrency limit: new work gets only its share while finishing work may use the whole
// limit; the limit shrinks when latency rises above its baseline, grows when latency holds and traffic uses
// the limit, does not grow on idle traffic, and stays inside its bounds.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AdaptiveConcurrencyLimit, adaptiveLimitDefaults } from './adaptive-limit.js';

const options = { ...adaptiveLimitDefaults, initialLimit: 20, minLimit: 5, maxLimit: 100, windowSize: 10 };

function fill(limit: AdaptiveConcurrencyLimit, count: number): void {
  for (let index = 0; index < count; index += 1) assert.ok(limit.tryAcquire('finish'));
}

test('new work is admitted up to its share; finishing work up to the whole limit', () => {
  const limit = new AdaptiveConcurrencyLimit(options);
  let admittedNew = 0;
  while (limit.tryAcquire('new')) admittedNew += 1;
  assert.equal(admittedNew, 16, '80% of 20');
  let admittedFinish = 0;
  while (limit.tryAcquire('finish')) admittedFinish += 1;
  assert.equal(admittedFinish, 4);
  limit.release(10);
  assert.equal(limit.tryAcquire('new'), false, 'new work waits while finishing work holds the rest');
  assert.equal(limit.tryAcquire('finish'), true);
});

/** Runs windows at full occupancy with a given latency and returns the limit after. */
function drive(limit: AdaptiveConcurrencyLimit, latencyMs: number, windows: number): number {
  for (let window = 0; window < windows; window += 1) {
    const occupancy = limit.limit;
    fill(limit, occupancy);
    for (let index = 0; index < occupancy; index += 1) limit.release(latencyMs);
  }
  return limit.limit;
}

test('grows while latency holds at its baseline, shrinks when latency rises, within bounds', () => {
  const limit = new AdaptiveConcurrencyLimit(options);
  const grown = drive(limit, 100, 20);
  assert.ok(grown > 20, `grew to ${grown}`);
  assert.ok(grown <= 100);
  const shrunk = drive(limit, 400, 3);
  assert.ok(shrunk < grown, `shrank from ${grown} to ${shrunk}`);
  assert.ok(shrunk >= 5);
  const floor = drive(limit, 5_000, 60);
  assert.ok(floor >= 5, 'never below the minimum');
});

test('does not grow when traffic never reaches the limit', () => {
  const limit = new AdaptiveConcurrencyLimit(options);
  for (let index = 0; index < 200; index += 1) {
    assert.ok(limit.tryAcquire('finish'));
    limit.release(100);
  }
  assert.equal(limit.limit, 20);
});

test('tenants: alone, a tenant may use the whole ceiling; with another present, a burst is capped short of it, a newcomer finds room, and the burster is refused over its share', () => {
  const alone = new AdaptiveConcurrencyLimit({ ...options, initialLimit: 20, minLimit: 20, maxLimit: 20 });
  let solo = 0;
  for (let admission = alone.admit('new', 'a'); admission === 'admitted'; admission = alone.admit('new', 'a')) solo += 1;
  assert.equal(solo, 16, 'new work\'s whole ceiling: no one to keep room for');
  assert.equal(alone.admit('new', 'a'), 'overloaded');

  const limit = new AdaptiveConcurrencyLimit({ ...options, initialLimit: 20, minLimit: 20, maxLimit: 20 });
  // b was here a moment ago: 10% of the ceiling (at least one slot) is kept for tenants below their share.
  assert.equal(limit.admit('new', 'b'), 'admitted');
  limit.release(10, true, 'b');
  let burst = 0;
  for (let admission = limit.admit('new', 'a'); admission === 'admitted'; admission = limit.admit('new', 'a')) burst += 1;
  assert.equal(burst, 14, 'floor(16 x 0.9)');
  assert.equal(limit.admit('new', 'b'), 'admitted', 'the other tenant is served from the headroom');
  assert.equal(limit.admit('new', 'a'), 'over_share');
  assert.equal(limit.admit('finish', 'b'), 'admitted', 'the other tenant\'s finishing work too');
  // As the burster's requests end, b keeps being admitted until both hold their share (7 each of 14).
  for (let index = 0; index < 7; index += 1) limit.release(10, true, 'a');
  assert.equal(limit.inFlightOf('a'), 7);
  let more = 0;
  while (limit.admit('new', 'b') === 'admitted') more += 1;
  assert.ok(limit.inFlightOf('b') >= 7, `b holds ${limit.inFlightOf('b')}`);
  assert.ok(more >= 5);
  assert.equal(limit.admit('new', 'a'), 'over_share');
  // Without tenants (unauthenticated routes) the ceiling alone decides.
  const plain = new AdaptiveConcurrencyLimit({ ...options, initialLimit: 20, minLimit: 20, maxLimit: 20 });
  let admitted = 0;
  while (plain.tryAcquire('new')) admitted += 1;
  assert.equal(admitted, 16);
});

test('tenants: the fair share is max-min, so a burster may use what a quiet tenant leaves', () => {
  const limit = new AdaptiveConcurrencyLimit({ ...options, initialLimit: 20, minLimit: 20, maxLimit: 20 });
  assert.equal(limit.admit('new', 'quiet'), 'admitted');
  assert.equal(limit.admit('new', 'quiet'), 'admitted');
  let burst = 0;
  while (limit.admit('new', 'burster') === 'admitted') burst += 1;
  // 14 slots are shared (16 less the headroom); the quiet tenant holds 2, so the burster's share is the other 12.
  assert.equal(burst, 12);
  assert.equal(limit.admit('new', 'burster'), 'over_share');
  assert.equal(limit.admit('new', 'quiet'), 'admitted', 'the quiet tenant, below its share, is served from the headroom');
});
