import type { KeelApp, KeelServices } from '../http/app.js';
import { inContext } from '../http/app.js';
import { CreateMerchantBody, IdParams, PartnerKeysBody } from '../http/schemas.js';
import { checkCountry } from '../http/validation.js';
import type { GatewayName } from '../gateways/connector.js';
import { createMerchant, namedContractFees, namedPartnerKeys, partnerKeyProblem, unlistedFeeError, unlistedPartner, updateMerchantPartners } from './merchants.js';
import { KeelError } from '../errors.js';
import { publicToUuid } from '../storage/ids.js';

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
      const live = body.live === true;
      const listed = body.partners ?? [{ gateway: body.gateway ?? 'toss' }];
      const gateways = listed.map((partner) => partner.gateway);
      // A partner's key comes from its entry in `partners`, else `toss_secret_key` / `stripe_secret_key`, else
      // (for the first partner) `partner_secret_key`.
      const keys: Partial<Record<GatewayName, string>> = {
        ...(body.partner_secret_key === undefined ? {} : { [gateways[0] ?? 'toss']: body.partner_secret_key }),
        ...namedPartnerKeys(body.toss_secret_key, body.stripe_secret_key),
      };
      for (const partner of listed) if ('partner_secret_key' in partner && partner.partner_secret_key !== undefined) keys[partner.gateway] = partner.partner_secret_key;
      const refused = partnerKeyProblem(gateways, keys, live);
      if (refused !== undefined) {
        const param = body[`${refused.gateway}_secret_key`] !== undefined ? `${refused.gateway}_secret_key` : body.partners === undefined ? 'partner_secret_key' : 'partners';
        throw new KeelError('parameter_invalid', `The ${refused.gateway} secret key cannot be used: ${refused.problem}.`, { param });
      }
      const fees = namedContractFees(body.toss_fee, body.stripe_fee);
      const unlisted = unlistedPartner(gateways, fees);
      if (unlisted !== undefined) throw unlistedFeeError(unlisted);
      const created = await createMerchant(services.database.db, services.deps.cipher, {
        live,
        name: body.name,
        brandName: body.brand_name,
        brandColor: body.brand_color,
        brandLogoUrl: body.logo_url ?? body.brand_logo_url,
        country,
        partners: gateways.map((gateway) => ({ gateway, partnerSecretKey: keys[gateway], contractFee: fees[gateway] })),
      });
      return reply.status(201).send(created);
    }),
  );

  // Sets the shop's keys and negotiated fees at partners it already lists; the answer says which partners have
  // a key (never the key) and each one's fee.
  app.post('/admin/merchants/:id', { config: operator, schema: { params: IdParams, body: PartnerKeysBody, hide: true } }, (request, reply) =>
    inContext(request, async () => {
      const body = request.body;
      const updated = await updateMerchantPartners(services.database.db, services.deps.cipher, request.params.id, {
        keys: namedPartnerKeys(body.toss_secret_key, body.stripe_secret_key),
        fees: namedContractFees(body.toss_fee, body.stripe_fee),
      });
      services.authenticator.forgetMerchant(publicToUuid('merchant', updated.id) ?? '');
      return reply.send(updated);
    }),
  );
}
