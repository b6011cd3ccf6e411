/**
 * Brand Pay's input rules, pure. A customer key identifies the shopper at the merchant and lands in logs and
 * partner requests, so, as Toss Payments requires of its `customerKey`, it may not be guessable personal data
 * (an email address, a phone number) nor a plain sequence. A PIN is six digits and not a trivial one.
 */

export const customerKeyLengthMin = 2;
export const customerKeyLengthMax = 50;
const customerKeyCharacters = /^[A-Za-z0-9\-_=.@]+$/;
const emailLike = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;
const phoneLike = /^\+?[0-9][0-9-]{7,}$/;

/** Why a customer key is refused, or undefined when it is acceptable. */
export function customerKeyProblem(key: string): string | undefined {
  if (key.length < customerKeyLengthMin || key.length > customerKeyLengthMax) return `customer_key must be ${customerKeyLengthMin}-${customerKeyLengthMax} characters`;
  if (!customerKeyCharacters.test(key)) return 'customer_key may hold letters, digits and - _ = . @ only';
  if (emailLike.test(key)) return 'customer_key must not be an email address';
  if (phoneLike.test(key) && key.replaceAll('-', '').replace('+', '').length >= 9) return 'customer_key must not be a phone number';
  if (isPlainSequence(key)) return 'customer_key must not be a plain sequence';
  return undefined;
}

/** All one character, or consecutive characters up or down (`aaaa`, `123456`, `fedcba`). */
export function isPlainSequence(value: string): boolean {
  if (value.length < 2) return false;
  const codes = [...value].map((char) => char.charCodeAt(0));
  const steps = codes.slice(1).map((code, index) => code - (codes[index] ?? 0));
  return steps.every((step) => step === 0) || steps.every((step) => step === 1) || steps.every((step) => step === -1);
}

export const pinLength = 6;

export function pinProblem(pin: string): string | undefined {
  if (!/^[0-9]{6}$/.test(pin)) return 'pin must be exactly 6 digits';
  if (isPlainSequence(pin)) return 'pin must not be all one digit, ascending or descending';
  return undefined;
}
