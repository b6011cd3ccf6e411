import { Type, type Static } from 'typebox';
import { ListQuery } from './lists.js';

/**
 * The API's request schemas (TypeBox), validated strictly: no coercion of body types, no unknown fields. The
 * same schemas generate `/openapi.json`. Range rules that depend on other fields (an amount's maximum for its
 * currency, a card's checksum) are checked in `validation.ts`.
 */

export const amountMaxAbsolute = Number.MAX_SAFE_INTEGER;
export const metadataKeysMax = 20;

const printable = '^[\\x21-\\x7e]+$';

export const CardInput = Type.Object(
  {
    number: Type.String({ pattern: '^[0-9]{12,19}$', description: 'Card number (PAN); exchanged for a partner token at once, never stored or logged.' }),
    exp_month: Type.Integer({ minimum: 1, maximum: 12 }),
    exp_year: Type.Integer({ minimum: 2000, maximum: 2100 }),
    cvc: Type.String({ pattern: '^[0-9]{3,4}$' }),
  },
  { additionalProperties: false },
);

/** A payment method to store for a Brand Pay customer: a card (tokenized at once) or a bank account. */
export const AttachMethodBody = Type.Union([
  Type.Object({ type: Type.Literal('card'), card: CardInput }, { additionalProperties: false }),
  Type.Object(
    {
      type: Type.Literal('bank_account'),
      bank_account: Type.Object(
        {
          bank_code: Type.String({ pattern: '^[0-9A-Z]{2,11}$' }),
          account_number: Type.String({ pattern: '^[0-9]{6,20}$' }),
          holder_name: Type.String({ minLength: 1, maxLength: 100 }),
        },
        { additionalProperties: false },
      ),
    },
    { additionalProperties: false },
  ),
]);
export type AttachMethodBody = Static<typeof AttachMethodBody>;

export const PaymentMethodInput = Type.Union([
  Type.String({ pattern: '^pm_[0-9A-Za-z]{26}$', description: 'A stored payment method (Brand Pay).' }),
  Type.Object({ type: Type.Literal('card'), card: CardInput }, { additionalProperties: false }),
]);

export const metadataKeyLengthMax = 40;
export const metadataValueLengthMax = 500;

/** Stripe's metadata limits: at most 20 keys, keys of 1-40 characters, string values of at most 500. */
export const Metadata = Type.Record(Type.String(), Type.String({ maxLength: metadataValueLengthMax }), {
  maxProperties: metadataKeysMax,
  propertyNames: { minLength: 1, maxLength: metadataKeyLengthMax },
  description: `At most ${metadataKeysMax} keys of 1-${metadataKeyLengthMax} characters; values are strings of at most ${metadataValueLengthMax}.`,
});

export const CreatePaymentBody = Type.Object(
  {
    amount: Type.Integer({ minimum: 1, maximum: amountMaxAbsolute, description: 'In the currency\'s minor unit.' }),
    currency: Type.String({ pattern: '^[A-Z]{3}$', description: 'ISO 4217, upper case.' }),
    order_id: Type.String({ minLength: 1, maxLength: 64, pattern: printable }),
    country: Type.Optional(Type.String({ pattern: '^[A-Z]{2}$', description: 'ISO 3166-1 alpha-2; defaults to the merchant\'s.' })),
    capture_method: Type.Optional(Type.Union([Type.Literal('automatic'), Type.Literal('manual')])),
    payment_method: Type.Optional(PaymentMethodInput),
    customer: Type.Optional(Type.String({ pattern: '^cus_[0-9A-Za-z]{26}$' })),
    confirm: Type.Optional(Type.Boolean()),
    description: Type.Optional(Type.String({ maxLength: 1000 })),
    metadata: Type.Optional(Metadata),
    queue_ticket: Type.Optional(Type.String({ pattern: '^qt_[0-9A-Za-z]{26}$', description: 'An admitted checkout queue ticket (`POST /v1/queue_tickets`): the payment has the priority of work that finishes one.' })),
  },
  { additionalProperties: false },
);
export type CreatePaymentBody = Static<typeof CreatePaymentBody>;

export const ConfirmBody = Type.Object({ payment_method: Type.Optional(PaymentMethodInput) }, { additionalProperties: false });
export type ConfirmBody = Static<typeof ConfirmBody>;

export const CaptureBody = Type.Object({ amount: Type.Optional(Type.Integer({ minimum: 1, maximum: amountMaxAbsolute })) }, { additionalProperties: false });
export const CancelBody = Type.Object({ reason: Type.Optional(Type.String({ maxLength: 200 })) }, { additionalProperties: false });

export const CreateRefundBody = Type.Object(
  {
    payment: Type.String({ pattern: '^pay_[0-9A-Za-z]{26}$' }),
    amount: Type.Optional(Type.Integer({ minimum: 1, maximum: amountMaxAbsolute })),
    reason: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);

export const IdParams = Type.Object({ id: Type.String({ maxLength: 64 }) });

export const ListPaymentsQuery = ListQuery({
  status: Type.Optional(
    Type.Union(
      ['requires_payment_method', 'requires_confirmation', 'processing', 'requires_capture', 'succeeded', 'failed', 'canceled'].map((status) =>
        Type.Literal(status),
      ),
    ),
  ),
  order_id: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
});

/**
 * A shop's negotiated fee at a partner: `"2.5%"`, `"2.9%+30"` — a percentage with up to two decimals, then
 * optionally `+` fixed minor units (`parseContractFee` reads the groups).
 */
export const contractFeePattern = '^([0-9]{1,2})(?:\\.([0-9]{1,2}))?% ?(?:\\+ ?([0-9]{1,6}))?$';
const ContractFee = Type.String({ pattern: contractFeePattern, maxLength: 20 });

export const PartnerKeysBody = Type.Object(
  {
    toss_secret_key: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    stripe_secret_key: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    toss_fee: Type.Optional(ContractFee),
    stripe_fee: Type.Optional(ContractFee),
  },
  { additionalProperties: false, minProperties: 1 },
);

export const CreateMerchantBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100 }),
    brand_name: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    brand_color: Type.Optional(Type.String({ pattern: '^#[0-9a-fA-F]{6}$' })),
    brand_logo_url: Type.Optional(Type.String({ pattern: '^https?://', maxLength: 2000 })),
    /** The contract's name for `brand_logo_url` (`keel merchant create --logo-url`). */
    logo_url: Type.Optional(Type.String({ pattern: '^https?://', maxLength: 2000 })),
    /** The shop's own partner secret keys, by partner (`--toss-secret-key`, `--stripe-secret-key`). */
    toss_secret_key: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    stripe_secret_key: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    /** The shop's negotiated fee per partner (`--toss-fee`, `--stripe-fee`); absent: the partner's standard pricing. */
    toss_fee: Type.Optional(ContractFee),
    stripe_fee: Type.Optional(ContractFee),
    /** Live mode: `sk_live_`/`pk_live_` keys, real partner URLs only (`keel merchant create --live`). */
    live: Type.Optional(Type.Boolean()),
    country: Type.Optional(Type.String({ pattern: '^[A-Z]{2}$' })),
    gateway: Type.Optional(Type.Union([Type.Literal('toss'), Type.Literal('stripe')])),
    partner_secret_key: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    partners: Type.Optional(
      Type.Array(
        Type.Object(
          {
            gateway: Type.Union([Type.Literal('toss'), Type.Literal('stripe')]),
            partner_secret_key: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
          },
          { additionalProperties: false },
        ),
        { minItems: 1, maxItems: 2, uniqueItems: true },
      ),
    ),
  },
  { additionalProperties: false },
);
