import type { GatewayName } from '../gateways/connector.js';

/** The merchant an operation acts for, as authentication established it. */
export interface MerchantContext {
  readonly id: string;
  readonly country: string;
  /** The partners in the merchant's order of priority, each with the merchant's key there. */
  readonly partners: readonly MerchantPartner[];
  readonly livemode: boolean;
  /** The merchant's own API rate limit; absent: Keel's defaults. */
  readonly rateLimit: { readonly perSecond: number; readonly burst: number } | null;
}

export interface MerchantPartner {
  readonly gateway: GatewayName;
  /** Null: a live merchant without a key at this partner; nothing is sent there (`gateway_not_configured`). */
  readonly partnerSecretKey: string | null;
}
