/**
 * Money rules: amounts are integers in the currency's minor unit (KRW and JPY have none), stored as bigint,
 * never floats. Each supported currency names its exponent and its largest accepted amount.
 */

interface CurrencyRule {
  readonly exponent: 0 | 2 | 3;
  /** The largest amount one payment may carry, in minor units. */
  readonly amountMax: bigint;
}

const twoDecimalMax = 99_999_999n; // 999,999.99 in the major unit, Stripe's own per-charge ceiling.

export const currencies: Readonly<Record<string, CurrencyRule>> = {
  KRW: { exponent: 0, amountMax: 100_000_000n },
  JPY: { exponent: 0, amountMax: 99_999_999n },
  VND: { exponent: 0, amountMax: 99_999_999_999n },
  CLP: { exponent: 0, amountMax: 999_999_999n },
  TWD: { exponent: 2, amountMax: twoDecimalMax },
  USD: { exponent: 2, amountMax: twoDecimalMax },
  EUR: { exponent: 2, amountMax: twoDecimalMax },
  GBP: { exponent: 2, amountMax: twoDecimalMax },
  CAD: { exponent: 2, amountMax: twoDecimalMax },
  AUD: { exponent: 2, amountMax: twoDecimalMax },
  NZD: { exponent: 2, amountMax: twoDecimalMax },
  CHF: { exponent: 2, amountMax: twoDecimalMax },
  SEK: { exponent: 2, amountMax: twoDecimalMax },
  NOK: { exponent: 2, amountMax: twoDecimalMax },
  DKK: { exponent: 2, amountMax: twoDecimalMax },
  PLN: { exponent: 2, amountMax: twoDecimalMax },
  CZK: { exponent: 2, amountMax: twoDecimalMax },
  SGD: { exponent: 2, amountMax: twoDecimalMax },
  HKD: { exponent: 2, amountMax: twoDecimalMax },
  CNY: { exponent: 2, amountMax: twoDecimalMax },
  INR: { exponent: 2, amountMax: twoDecimalMax },
  THB: { exponent: 2, amountMax: twoDecimalMax },
  MYR: { exponent: 2, amountMax: twoDecimalMax },
  PHP: { exponent: 2, amountMax: twoDecimalMax },
  IDR: { exponent: 2, amountMax: 99_999_999_999n },
  MXN: { exponent: 2, amountMax: twoDecimalMax },
  BRL: { exponent: 2, amountMax: twoDecimalMax },
  ZAR: { exponent: 2, amountMax: twoDecimalMax },
  AED: { exponent: 2, amountMax: twoDecimalMax },
  ILS: { exponent: 2, amountMax: twoDecimalMax },
  TRY: { exponent: 2, amountMax: twoDecimalMax },
  KWD: { exponent: 3, amountMax: 99_999_999n },
  BHD: { exponent: 3, amountMax: 99_999_999n },
  JOD: { exponent: 3, amountMax: 99_999_999n },
};

export function currencyRule(code: string): CurrencyRule | undefined {
  return Object.hasOwn(currencies, code) ? currencies[code] : undefined;
}

/** ISO 3166-1 alpha-2 country codes (officially assigned). */
export const countryCodes: ReadonlySet<string> = new Set(
  ('AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY ' +
    'BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK ' +
    'FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR ' +
    'IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ' +
    'ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM ' +
    'PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF ' +
    'TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW').split(' '),
);
