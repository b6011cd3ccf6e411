import type { KeelApp, KeelServices } from '../http/app.js';
import { inContext } from '../http/app.js';
import { CreateMerchantBody } from '../http/schemas.js';
import { checkCountry } from '../http/validation.js';
import { createMerchant } from './merchants.js';

/**
 * The operator's `POST /admin/merchants` (`Authorization: Bearer <KEEL_ADMIN_TOKEN>`): how `keel merchant
 * create` reaches a running embedded Keel, whose PGlite database only one process may open.
 */
export function registerMerchantRoutes(app: KeelApp, services: KeelServices): void {
  const operator = { auth: 'operator' } as const;
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
