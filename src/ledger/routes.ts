import type { KeelApp, KeelServices } from '../http/app.js';
import { inContext } from '../http/app.js';
import { readBalance } from './ledger.js';

/** `GET /v1/balance`: the merchant's pending and available balances, read from the journal. */
export function registerLedgerRoutes(app: KeelApp, services: KeelServices): void {
  app.get('/v1/balance', { config: { auth: 'secret' }, schema: { tags: ['ledger'] } }, (request) =>
    inContext(request, async () => ({ object: 'balance', ...(await readBalance(services.deps.db, request.merchant.id)) })),
  );
}
