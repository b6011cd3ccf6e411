// Proves Brand Pay's input rules: customer keys refuse emails, phone numbers, plain sequences, bad lengths and
// characters; PINs are six digits and refuse all-equal, ascending and descending ones.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { customerKeyProblem, pinProblem } from './rules.js';

test('customer keys', () => {
  for (const good of ['cust_8f3a2b', 'user-42', 'a7', 'a'.repeat(49) + 'b', 'x7=Q.r_9']) assert.equal(customerKeyProblem(good), undefined, good);
  for (const bad of ['a', 'a'.repeat(51), 'kim@example.com', '010-1234-5678', '+821012345678', '01012345678', 'aaaaaa', '123456', 'abcdef', 'fedcba', 'has space', 'ümlaut']) {
    assert.ok(customerKeyProblem(bad) !== undefined, bad);
  }
});

test('PINs', () => {
  for (const good of ['135790', '482913', '112233', '908172']) assert.equal(pinProblem(good), undefined, good);
  for (const bad of ['000000', '999999', '123456', '456789', '654321', '987654', '12345', '1234567', '12a456', '']) {
    assert.ok(pinProblem(bad) !== undefined, bad);
  }
});
