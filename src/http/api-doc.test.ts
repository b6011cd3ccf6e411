// Keeps docs/api.md in step with the routes Keel registers: every route of a whole Keel (API, Brand Pay page,
// operator and health endpoints) is documented there as `METHOD /path`, and every route it documents exists.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { startTestKeel, type TestKeel } from '../testing/harness.js';
import { registeredRoutes } from './app.js';

let keel: TestKeel;
let routes: readonly string[] = [];
before(async () => {
  keel = await startTestKeel({ forceEmbedded: true });
  routes = registeredRoutes(keel.keel.app);
});
after(async () => {
  await keel.close();
});

const reference = readFileSync(new URL('../../docs/api.md', import.meta.url), 'utf8');
/** `GET /v1/payments/{id}` and the like, as the reference writes them (inside backticks). */
const documented = new Set([...reference.matchAll(/`(GET|POST|DELETE) (\/[^` ]*)`/g)].map((match) => `${match[1]} ${match[2]}`));
/** Routes named only as a group ("its `/pay/{session}/…` calls"). */
const grouped = [/^(GET|POST) \/pay\/\{session\}\/.+$/, /^GET \/assets\/pay-page\.(js|css)$/];

test('every registered route is in docs/api.md', () => {
  // A CORS preflight (OPTIONS) belongs to the GET it precedes, which the reference documents.
  const missing = routes.filter((route) => !route.startsWith('OPTIONS ') && !documented.has(route) && !grouped.some((pattern) => pattern.test(route)));
  assert.ok(routes.length > 40, `expected Keel's routes, got ${routes.length}`);
  assert.deepEqual(missing, []);
});

test('every route docs/api.md names is registered', () => {
  assert.deepEqual([...documented].filter((route) => !routes.includes(route)), []);
});
