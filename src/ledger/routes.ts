import { Type } from 'typebox';
import type { KeelApp, KeelServices } from '../http/app.js';
import { inContext } from '../http/app.js';
import { isGatewayName, loadMerchantContext } from '../merchants/merchants.js';
import { partnerUrl } from '../gateways/registry.js';
import { uuidToPublic } from '../storage/ids.js';
import { readBalance } from './ledger.js';
import { importSettlements } from './settlements.js';

/**
 * `GET /v1/balance`: the merchant's pending and available balances, read from the journal; and the operator's
 * `POST /admin/settlements/import` (`Authorization: Bearer <KEEL_ADMIN_TOKEN>`).
 */
const SettlementBody = Type.Object(
  { start_date: Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}$' }), end_date: Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}$' }) },
  { additionalProperties: false },
);

export function registerLedgerRoutes(app: KeelApp, services: KeelServices): void {
  app.get('/v1/balance', { config: { auth: 'secret' }, schema: { tags: ['ledger'] } }, (request) =>
    inContext(request, async () => ({ object: 'balance', ...(await readBalance(services.deps.db, request.merchant.id)) })),
  );

  const operator = { auth: 'operator' } as const;
  // Imports every merchant's settlement reports for the period, from each of its partners, into the ledger
  // (idempotent: a row already imported is counted, not posted again).
  app.post('/admin/settlements/import', { config: operator, schema: { body: SettlementBody, hide: true } }, (request, reply) =>
    inContext(request, async () => {
      const db = services.database.db;
      const partners = await db.selectFrom('merchant_partners').select(['merchant_id', 'gateway']).orderBy('merchant_id').orderBy('gateway').execute();
      const period = { startDate: request.body.start_date, endDate: request.body.end_date };
      const data = [];
      for (const { merchant_id: merchantId, gateway } of partners) {
        const merchant = await loadMerchantContext(db, services.deps.cipher, merchantId);
        if (merchant === undefined || !isGatewayName(gateway)) continue;
        const result = await importSettlements(db, merchant, gateway, partnerUrl(services.partnerUrls, gateway, merchant.livemode), period, services.logger);
        data.push({
          object: 'settlement_import',
          merchant: uuidToPublic('merchant', merchantId),
          gateway,
          settled: result.settled,
          already_settled: result.alreadySettled,
          unmatched: result.unmatched,
          pending: result.pending,
        });
      }
      return reply.send({ object: 'list', data, has_more: false });
    }),
  );

}
