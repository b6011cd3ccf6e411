import { createMerchant } from '../../merchants/merchants.js';
import type { KeelApp, KeelServices } from '../app.js';
import { inContext, sendError } from '../app.js';
import { checkAdminToken } from '../auth.js';
import { isKeelError } from '../../errors.js';
import { CreateMerchantBody } from '../schemas.js';
import { checkCountry } from '../validation.js';

/**
 * Operator endpoints (`Authorization: Bearer <KEEL_ADMIN_TOKEN>`). `POST /admin/merchants` is how
 * `keel merchant create` reaches a running embedded Keel, whose PGlite database only one process may open.
 */
export function registerAdminRoutes(app: KeelApp, services: KeelServices): void {
  app.post('/admin/merchants', { schema: { body: CreateMerchantBody, hide: true } }, (request, reply) =>
    inContext(request, async () => {
      try {
        checkAdminToken(request.headers.authorization, services.adminToken);
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
      } catch (error) {
        if (isKeelError(error)) return sendError(request, reply, error);
        throw error;
      }
    }),
  );
}
