import type { KeelApp, KeelServices } from '../http/app.js';
import { inContext } from '../http/app.js';
import { CreateMerchantBody } from '../http/schemas.js';
import { checkCountry } from '../http/validation.js';
import { createMerchant } from './merchants.js';
import { KeelError } from '../errors.js';

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
      // A partner's key comes from its entry in `partners`, or from `toss_secret_key` / `stripe_secret_key`.
      const named = { toss: body.toss_secret_key, stripe: body.stripe_secret_key };
      const gateways = body.partners?.map((partner) => partner.gateway) ?? [body.gateway ?? 'toss'];
      for (const gateway of ['toss', 'stripe'] as const) {
        if (named[gateway] !== undefined && !gateways.includes(gateway)) {
          throw new KeelError('parameter_invalid', `${gateway}_secret_key was given, but ${gateway} is not one of the merchant's partners.`, { param: `${gateway}_secret_key` });
        }
      }
      const keyOf = (gateway: 'toss' | 'stripe', given: string | undefined) => given ?? named[gateway] ?? (gateways[0] === gateway ? body.partner_secret_key : undefined);
      const created = await createMerchant(services.database.db, services.deps.cipher, {
        name: body.name,
        brandName: body.brand_name,
        brandColor: body.brand_color,
        brandLogoUrl: body.logo_url ?? body.brand_logo_url,
        country,
        partners: (body.partners ?? gateways.map((gateway) => ({ gateway, partner_secret_key: undefined }))).map((partner) => ({
          gateway: partner.gateway,
          partnerSecretKey: keyOf(partner.gateway, partner.partner_secret_key),
        })),
      });
      return reply.status(201).send(created);
    }),
  );
}
