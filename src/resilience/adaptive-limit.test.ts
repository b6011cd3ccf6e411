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
