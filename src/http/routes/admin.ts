import { Type } from 'typebox';
import { importSettlements } from '../../ledger/settlements.js';
import { createMerchant, isGatewayName, loadMerchantContext } from '../../merchants/merchants.js';
import { uuidToPublic } from '../../storage/ids.js';
import type { KeelApp, KeelServices } from '../app.js';
import { inContext } from '../app.js';
import { paymentsProjection, rebuildProjections } from '../../reports/projection.js';
import { CreateMerchantBody } from '../schemas.js';
import { checkCountry } from '../validation.js';

/**
 * Operator endpoints (`Authorization: Bearer <KEEL_ADMIN_TOKEN>`). `POST /admin/merchants` is how
 * `keel merchant create` reaches a running embedded Keel, whose PGlite database only one process may open.
 */
const SettlementBody = Type.Object(
  { start_date: Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}$' }), end_date: Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}$' }) },
  { additionalProperties: false },
);

export function registerAdminRoutes(app: KeelApp, services: KeelServices): void {
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
        const result = await importSettlements(db, merchant, gateway, services.partnerUrls[gateway], period, services.logger);
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

  // Recomputes the read models from the outbox (after an upgrade that adds one, or to repair one).
  app.post('/admin/projections/rebuild', { config: operator, schema: { hide: true } }, (request) =>
    inContext(request, async () => {
      const report = await rebuildProjections(services.database.db, services.logger);
      return { object: 'projection_rebuild', name: paymentsProjection, events_replayed: report.events };
    }),
  );

  app.post('/admin/merchants', { config: operator, schema: { body: CreateMerchantBody, hide: true } }, (request, reply) =>
    inContext(request, async () => {
      const body = request.body;
      const country = checkCountry(body.country ?? 'KR');
      const created = await createMerchant(services.database.db, services.deps.cipher, {
        name: body.name,
        brandName: body.brand_name,
        brandColor: body.brand_color,
        brandLogoUrl: body.brand_logo_url,
        country,
        gateway: body.gateway,
        partnerSecretKey: body.partner_secret_key,
        partners: body.partners?.map((partner) => ({ gateway: partner.gateway, partnerSecretKey: partner.partner_secret_key })),
      });
      return reply.status(201).send(created);
    }),
  );
}
