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
  /** The fee the shop negotiated with this partner; null: the partner's standard pricing. */
  readonly contractFee?: ContractFeeTerms | null;
}

/**
 * A partner contract's fee for a sale: `rateBps` basis points of the amount plus `fixed` minor units (the fixed
 * part only outside zero-decimal currencies), e.g. 2.9% + 30 is `{ rateBps: 290, fixed: 30n }`.
 */
export interface ContractFeeTerms {
  readonly rateBps: number;
  readonly fixed: bigint;
}
