// Proves the parsing of the settings whose mistakes are dangerous rather than merely wrong: KEEL_TRUST_PROXY
// (trusting every hop would let any client choose its IP) and KEEL_RETENTION_DAYS.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig, parseTrustProxy } from './config.js';

test('KEEL_TRUST_PROXY: off by default, a hop count, or addresses and CIDR ranges; "true" and garbage refused', () => {
  assert.equal(loadConfig({}).trustProxy, false);
  assert.equal(parseTrustProxy('off'), false);
  assert.equal(parseTrustProxy('0'), false);
  assert.equal(parseTrustProxy('2'), 2);
  assert.deepEqual(parseTrustProxy('10.0.0.0/8, 192.168.1.7,::1,fd00::/8,loopback'), ['10.0.0.0/8', '192.168.1.7', '::1', 'fd00::/8', 'loopback']);
  for (const bad of ['true', '10.0.0.0/33', 'proxy.internal', '10.0.0.1/8/2', '::1/129']) {
    assert.throws(() => parseTrustProxy(bad), /KEEL_TRUST_PROXY/, bad);
  }
});

test('KEEL_RETENTION_DAYS: 30 by default, at least 1', () => {
  assert.equal(loadConfig({}).retentionDays, 30);
  assert.equal(loadConfig({ KEEL_RETENTION_DAYS: '7' }).retentionDays, 7);
  assert.equal(loadConfig({ KEEL_RETENTION_DAYS: '0' }).retentionDays, 1);
  assert.throws(() => loadConfig({ KEEL_RETENTION_DAYS: 'forever' }), /KEEL_RETENTION_DAYS/);
});
