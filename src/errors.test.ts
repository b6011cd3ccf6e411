// Proves the error catalogue is closed and documented: every code maps to one HTTP status and one of the
// contract's error types, and docs/errors.md lists exactly the codes in the code, with the same status and type.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { errorCatalogue, errorTypes, KeelError } from './errors.js';

const typeStatuses: Record<string, readonly number[]> = {
  invalid_request_error: [400, 403, 404, 409, 410, 413, 415, 422],
  authentication_error: [401, 403],
  card_error: [402],
  idempotency_error: [409, 422],
  rate_limit_error: [429],
  api_error: [500, 503],
  gateway_error: [502, 503, 504],
};

test('every code has a status its type allows', () => {
  for (const [code, entry] of Object.entries(errorCatalogue)) {
    assert.ok((errorTypes as readonly string[]).includes(entry.type), code);
    assert.ok(typeStatuses[entry.type]?.includes(entry.status), `${code}: ${entry.type} with ${entry.status}`);
    const error = new KeelError(code as keyof typeof errorCatalogue, 'm');
    assert.equal(error.status, entry.status);
  }
});

test('docs/errors.md documents exactly the catalogue', () => {
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
  const rows = [...doc.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \| `([a-z_]+)` \|/gm)].map((match) => [match[1], Number(match[2]), match[3]]);
  const expected = Object.entries(errorCatalogue).map(([code, entry]) => [code, entry.status, entry.type]);
  assert.deepEqual(rows, expected);
});
