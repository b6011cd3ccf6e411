import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startExampleShop } from './shop.js';

/**
 * `npm run example`: the example shop (`examples/shop.ts`) against a running Keel. Start Keel first
 * (`npm start`); the shop takes the demo merchant's keys from `KEEL_DATA_DIR/demo-merchant.json`, or
 * `KEEL_SECRET_KEY` and `KEEL_PUBLISHABLE_KEY`, registers its webhook endpoint, and prints every verified event.
 */
const keelUrl = (process.env['KEEL_URL'] ?? 'http://127.0.0.1:4000').replace(/\/+$/, '');
const demoFile = join(process.env['KEEL_DATA_DIR'] ?? './.keel', 'demo-merchant.json');
const demo = existsSync(demoFile) ? (JSON.parse(readFileSync(demoFile, 'utf8')) as { secret_key: string; publishable_key: string }) : undefined;
const secretKey = process.env['KEEL_SECRET_KEY'] ?? demo?.secret_key;
const publishableKey = process.env['KEEL_PUBLISHABLE_KEY'] ?? demo?.publishable_key;
if (secretKey === undefined || publishableKey === undefined) {
  console.error(`example shop: no keys. Run \`npm start\` first (it writes ${demoFile}), or set KEEL_SECRET_KEY and KEEL_PUBLISHABLE_KEY.`);
  process.exit(1);
}
const reachable = await fetch(`${keelUrl}/healthz`).then((response) => response.ok, () => false);
if (!reachable) {
  console.error(`example shop: Keel does not answer at ${keelUrl}; start it with \`npm start\` (or set KEEL_URL).`);
  process.exit(1);
}

const shop = await startExampleShop({
  keelUrl,
  secretKey,
  publishableKey,
  customerKey: process.env['KEEL_EXAMPLE_SHOPPER'] ?? `shopper_${randomBytes(4).toString('hex')}`,
  amount: 29_000,
  port: Number(process.env['KEEL_EXAMPLE_PORT'] ?? 4200),
  webhooks: true,
});
console.log(`Example shop on ${shop.url} (Keel at ${keelUrl}); open it in a browser and pay with 4242 4242 4242 4242.`);
let printed = 0;
const timer = setInterval(() => {
  for (const event of shop.events.slice(printed)) console.log(`webhook verified: ${event.type} ${event.id} (${String(event.object['id'])})`);
  printed = shop.events.length;
}, 500);
const stop = async () => {
  clearInterval(timer);
  await shop.close();
  process.exit(0);
};
process.once('SIGINT', () => void stop());
process.once('SIGTERM', () => void stop());
