import { pino } from 'pino';
import { loadConfig } from '../src/config.js';
import { createMerchant } from '../src/merchants/merchants.js';
import { createKeel } from '../src/runtime.js';

/**
 * One Keel API process for the overload benchmark: PostgreSQL in the schema the benchmark named, the partner
 * at KEEL_GATEWAY_URL (the benchmark's own gateway, in the load generator's process, so this process does only
 * Keel's work). Prints one JSON line with its URL and two merchants' keys, then serves until SIGTERM.
 */
const config = { ...loadConfig(), port: 0, logLevel: 'warn' };
const keel = await createKeel({
  config,
  role: 'all',
  inMemory: true,
  databaseSchema: process.env['KEEL_BENCH_SCHEMA'] ?? 'keel_bench',
  logDestination: pino.destination('/dev/null'),
});
const unlimited = { rateLimit: { perSecond: 1_000_000, burst: 1_000_000 } };
const merchant = await createMerchant(keel.database.db, keel.services.deps.cipher, { name: 'Overload Shop', ...unlimited });
// A second merchant, for the fairness run: its traffic shares the API with the first one's burst.
const other = await createMerchant(keel.database.db, keel.services.deps.cipher, { name: 'Quiet Shop', ...unlimited });
const url = await keel.listen();
console.log(JSON.stringify({ url, secretKey: merchant.secret_key, otherSecretKey: other.secret_key }));
process.once('SIGTERM', () => {
  void keel.close().then(() => process.exit(0));
});
