import { KeelError } from '../errors.js';
import type { CardDetails } from '../gateways/connector.js';
import { cardBrand, cardLast4 } from '../gateways/connector.js';
import { countryCodes, currencyRule } from '../money.js';
import type { PaymentMethodSnapshot } from '../payments/types.js';

/** Rules beyond the schemas: an amount's maximum for its currency, country codes, card checksums. */

export function checkAmount(amount: number, currency: string, param = 'amount'): bigint {
  const rule = currencyRule(currency);
  if (rule === undefined) throw new KeelError('currency_unsupported', `Currency ${currency} is not supported.`, { param: 'currency' });
  const value = BigInt(amount);
  if (value > rule.amountMax) {
    throw new KeelError('amount_too_large', `amount must be at most ${rule.amountMax} ${currency} minor units.`, { param });
  }
  return value;
}

export function checkCountry(country: string): string {
  if (!countryCodes.has(country)) throw new KeelError('parameter_invalid', `${country} is not an ISO 3166-1 country code.`, { param: 'country' });
  return country;
}

/** The Luhn checksum every card number carries. */
export function luhnValid(number: string): boolean {
  let sum = 0;
  for (let index = 0; index < number.length; index += 1) {
    let digit = Number(number[number.length - 1 - index]);
    if (index % 2 === 1) {
      digit *= 2;
      if (digit > 9) digit -= 9;
    }
    sum += digit;
  }
  return sum % 10 === 0;
}

export interface CardInputShape {
  readonly number: string;
  readonly exp_month: number;
  readonly exp_year: number;
  readonly cvc: string;
}

export function checkCard(card: CardInputShape, now: Date = new Date(), param = 'payment_method.card'): { card: CardDetails; snapshot: PaymentMethodSnapshot } {
  if (!luhnValid(card.number)) throw new KeelError('parameter_invalid', 'The card number is not valid.', { param: `${param}.number` });
  const expiresAfter = card.exp_year * 12 + card.exp_month;
  if (expiresAfter < now.getUTCFullYear() * 12 + now.getUTCMonth() + 1) {
    throw new KeelError('parameter_invalid', 'The card has expired.', { param: `${param}.exp_year` });
  }
  return {
    card: { number: card.number, expMonth: card.exp_month, expYear: card.exp_year, cvc: card.cvc },
    snapshot: { type: 'card', card: { brand: cardBrand(card.number), last4: cardLast4(card.number), exp_month: card.exp_month, exp_year: card.exp_year } },
  };
}
