import { readFileSync } from 'node:fs';
import { transformSync } from 'esbuild';
import { html, jsonData, type Html } from '../http/html.js';

/**
 * The hosted Brand Pay page, rendered on the server through the escaping `html` template. Its stylesheet and
 * script are Keel's own static files (`/assets/pay-page.css`, `/assets/pay-page.js`), so its CSP allows no
 * inline script or style; no external fonts, scripts or CDNs, and no cookie but the checkout queue's (the session
 * id in the path is the page's credential). Korean or English by `?lang=` or Accept-Language. Every control has a label and works
 * from the keyboard.
 */

export type Language = 'ko' | 'en';

const text = {
  ko: {
    title: '결제하기',
    amount: '결제 금액',
    methods: '결제 수단',
    noMethods: '등록된 결제 수단이 없습니다. 카드나 계좌를 등록해 주세요.',
    addCard: '카드 등록',
    cardNumber: '카드 번호',
    expMonth: '유효기간 월',
    expYear: '유효기간 연도',
    cvc: 'CVC',
    saveCard: '카드 등록하기',
    addBank: '계좌 등록',
    bankCode: '은행 코드',
    accountNumber: '계좌 번호',
    holderName: '예금주',
    saveBank: '계좌 등록하기',
    setPin: '결제 비밀번호 6자리를 정해 주세요',
    enterPin: '결제 비밀번호 6자리',
    pay: '결제하기',
    clear: '지우기',
    back: '하나 지우기',
    expired: '결제 시간이 지났습니다. 쇼핑몰에서 다시 결제해 주세요.',
    used: '이미 처리된 결제입니다.',
    locked: '비밀번호를 5회 잘못 입력해 결제가 잠겼습니다. 쇼핑몰 고객센터에 문의해 주세요.',
    processing: '결제를 처리하고 있습니다. 잠시만 기다려 주세요.',
    confirmPin: '확인을 위해 비밀번호를 한 번 더 입력해 주세요',
    pinMismatch: '두 비밀번호가 다릅니다. 처음부터 다시 정해 주세요.',
    backToShop: '쇼핑몰로 돌아가기',
    testMode: '테스트 결제입니다. 실제 돈은 오가지 않습니다.',
    paying: '결제 중…',
    payAmount: '{amount} 결제하기',
    order: '주문',
    errors: {
      pin_incorrect: '비밀번호가 틀렸습니다. {n}번 더 틀리면 결제가 잠깁니다.',
      pin_invalid: '비밀번호는 숫자 6자리이며, 같은 숫자나 연속된 숫자만으로는 정할 수 없습니다.',
      card_declined: '카드사에서 결제를 거절했습니다. 다른 카드를 사용해 주세요.',
      insufficient_funds: '카드 한도나 잔액이 부족합니다.',
      expired_card: '유효기간이 지난 카드입니다.',
      incorrect_card: '카드 정보가 올바르지 않습니다. 번호, 유효기간, CVC를 확인해 주세요.',
      card_authentication_required: '추가 인증이 필요한 카드입니다. 다른 카드를 사용해 주세요.',
      card_invalid: '카드 정보를 확인해 주세요.',
      gateway_unavailable: '카드사와 연결되지 않았습니다. 결제되지 않았으니 잠시 후 다시 시도해 주세요.',
      rate_limited: '시도가 너무 많습니다. 잠시 후 다시 시도해 주세요.',
      payment_method_unsupported: '이 결제 수단으로는 결제할 수 없습니다.',
      customer_inactive: '지금은 결제 수단을 등록할 수 없습니다.',
      generic: '결제를 진행할 수 없습니다. 잠시 후 다시 시도해 주세요.',
    },
  },
  en: {
    title: 'Checkout',
    amount: 'Amount',
    methods: 'Payment method',
    noMethods: 'No payment method yet. Add a card or a bank account.',
    addCard: 'Add a card',
    cardNumber: 'Card number',
    expMonth: 'Expiry month',
    expYear: 'Expiry year',
    cvc: 'CVC',
    saveCard: 'Save card',
    addBank: 'Add a bank account',
    bankCode: 'Bank code',
    accountNumber: 'Account number',
    holderName: 'Account holder',
    saveBank: 'Save bank account',
    setPin: 'Choose a 6-digit payment PIN',
    enterPin: '6-digit payment PIN',
    pay: 'Pay',
    clear: 'Clear',
    back: 'Delete one digit',
    expired: 'This checkout has expired. Please start again from the shop.',
    used: 'This checkout was already used.',
    locked: 'Payments are locked after 5 wrong PINs. Please contact the shop.',
    processing: 'Your payment is being processed. Please wait.',
    confirmPin: 'Enter the PIN again to confirm it',
    pinMismatch: 'The two PINs differ. Please choose the PIN again.',
    backToShop: 'Back to the shop',
    testMode: 'Test mode: no real money moves.',
    paying: 'Paying…',
    payAmount: 'Pay {amount}',
    order: 'Order',
    errors: {
      pin_incorrect: 'Wrong PIN. {n} more wrong PINs lock your payments.',
      pin_invalid: 'The PIN is 6 digits, and cannot be one digit repeated or a run of digits.',
      card_declined: 'The card company declined the payment. Please use another card.',
      insufficient_funds: 'The card has insufficient funds or credit.',
      expired_card: 'This card has expired.',
      incorrect_card: 'The card details are not right. Check the number, expiry and CVC.',
      card_authentication_required: 'This card needs an extra authentication. Please use another card.',
      card_invalid: 'Please check the card details.',
      gateway_unavailable: 'The card company could not be reached. Nothing was charged; please try again shortly.',
      rate_limited: 'Too many tries. Please wait a moment and try again.',
      payment_method_unsupported: 'This payment method cannot be used here.',
      customer_inactive: 'Payment methods cannot be added right now.',
      generic: 'The payment cannot go ahead right now. Please try again shortly.',
    },
  },
} as const;

export function languageFrom(query: string | undefined, acceptLanguage: string | undefined): Language {
  if (query === 'ko' || query === 'en') return query;
  return (acceptLanguage ?? '').toLowerCase().startsWith('ko') ? 'ko' : 'en';
}

export interface PageBrand {
  readonly name: string;
  readonly color: string;
  readonly logoUrl: string | null;
}

/** What the page shows of the checkout before its script has loaded the session. */
export interface PageCheckout {
  readonly orderId: string;
  /** The shop's name for the order (`order_name`), shown under the shop's; absent: the order id. */
  readonly orderName: string | null;
  /** Where the shopper goes back to when the checkout cannot go on (`fail_url?code=…`). */
  readonly failUrl: string;
  readonly testMode: boolean;
}

/** The shopper-facing messages of one language (the page's and its script's; never the API's English). */
export function shopperText(language: Language) {
  return text[language];
}

export function renderPayPage(sessionId: string, brand: PageBrand, checkout: PageCheckout, language: Language): Html {
  const t = text[language];
  const color = /^#[0-9a-fA-F]{6}$/.test(brand.color) ? brand.color : '#1b64da';
  const logo = brand.logoUrl !== null && /^https?:\/\//.test(brand.logoUrl) ? html`<img src="${brand.logoUrl}" alt="" class="logo">` : '';
  const digits = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '', '0', ''];
  const pad = digits
    .map((digit, index) =>
      digit === ''
        ? index === 9
          ? html`<button type="button" class="key" data-action="clear">${t.clear}</button>`
          : html`<button type="button" class="key" data-action="back" aria-label="${t.back}">⌫</button>`
        : html`<button type="button" class="key" data-digit="${digit}">${digit}</button>`,
    );
  return html`<!doctype html>
<html lang="${language}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${brand.name} · ${t.title}</title>
<link rel="stylesheet" href="/assets/pay-page.css">
</head>
<body>
<main>
  ${checkout.testMode ? html`<p class="test-banner" id="test-banner">${t.testMode}</p>` : ''}
  <header>${logo}<h1>${brand.name}</h1></header>
  <p class="order" id="order">${t.order} · ${checkout.orderName ?? checkout.orderId}</p>
  <p id="message" role="alert" aria-live="assertive"></p>
  <p id="back" hidden><a id="back-to-shop" class="secondary" href="#">${t.backToShop}</a></p>
  <div id="checkout">
    <section>
      <h2>${t.amount}</h2>
      <div class="amount" id="amount">…</div>
    </section>
    <section>
      <h2 id="methods-title">${t.methods}</h2>
      <div id="methods" role="radiogroup" aria-labelledby="methods-title"></div>
      <p id="no-methods" hidden>${t.noMethods}</p>
      <details id="add-card">
        <summary>${t.addCard}</summary>
        <form id="card-form">
          <label for="card-number">${t.cardNumber}</label>
          <input id="card-number" name="number" type="text" inputmode="numeric" autocomplete="cc-number" required>
          <label for="card-exp-month">${t.expMonth}</label>
          <input id="card-exp-month" name="exp_month" type="number" min="1" max="12" autocomplete="cc-exp-month" required>
          <label for="card-exp-year">${t.expYear}</label>
          <input id="card-exp-year" name="exp_year" type="number" min="2024" max="2100" autocomplete="cc-exp-year" required>
          <label for="card-cvc">${t.cvc}</label>
          <input id="card-cvc" name="cvc" type="password" inputmode="numeric" autocomplete="cc-csc" required>
          <button class="secondary" type="submit">${t.saveCard}</button>
        </form>
      </details>
      <details id="add-bank">
        <summary>${t.addBank}</summary>
        <form id="bank-form">
          <label for="bank-code">${t.bankCode}</label>
          <input id="bank-code" name="bank_code" type="text" required>
          <label for="bank-account">${t.accountNumber}</label>
          <input id="bank-account" name="account_number" type="text" inputmode="numeric" required>
          <label for="bank-holder">${t.holderName}</label>
          <input id="bank-holder" name="holder_name" type="text" required>
          <button class="secondary" type="submit">${t.saveBank}</button>
        </form>
      </details>
    </section>
    <section>
      <h2 id="pin-title">${t.enterPin}</h2>
      <label for="pin" class="visually-hidden">${t.enterPin}</label>
      <input id="pin" type="password" inputmode="numeric" maxlength="6" autocomplete="off" aria-describedby="pin-title">
      <div class="pad" aria-label="PIN pad">${pad}</div>
      <button class="primary" id="pay" type="button">${t.pay}</button>
    </section>
  </div>
</main>
<script type="application/json" id="keel-page">${jsonData({
    sessionId,
    lang: language,
    brandColor: color,
    failUrl: checkout.failUrl,
    orderId: checkout.orderId,
    text: {
      setPin: t.setPin,
      enterPin: t.enterPin,
      confirmPin: t.confirmPin,
      pinMismatch: t.pinMismatch,
      expired: t.expired,
      used: t.used,
      locked: t.locked,
      processing: t.processing,
      noMethods: t.noMethods,
      pay: t.pay,
      paying: t.paying,
      payAmount: t.payAmount,
      errors: t.errors,
    },
  })}</script>
<script src="/assets/pay-page.js" defer></script>
</body>
</html>`;
}

/** The page's stylesheet, served at /assets/pay-page.css (the brand colour is set by the script). */
export const payPageCss = `  :root { --brand: #1b64da; }
  * { box-sizing: border-box; }
  body { margin: 0; font-family: system-ui, -apple-system, "Segoe UI", "Apple SD Gothic Neo", "Noto Sans KR", sans-serif; background: #f2f4f6; color: #191f28; }
  main { max-width: 420px; margin: 0 auto; padding: 24px 20px 40px; }
  header { display: flex; align-items: center; gap: 10px; margin-bottom: 20px; }
  header h1 { font-size: 20px; margin: 0; color: var(--brand); }
  .logo { height: 32px; }
  section { background: #fff; border-radius: 16px; padding: 18px; margin-bottom: 14px; }
  h2 { font-size: 15px; margin: 0 0 12px; }
  .amount { font-size: 28px; font-weight: 700; }
  .method { display: flex; align-items: center; gap: 10px; padding: 10px; border: 1px solid #e5e8eb; border-radius: 12px; margin-bottom: 8px; }
  label { display: block; font-size: 13px; margin: 8px 0 4px; color: #4e5968; }
  input[type=text], input[type=password], input[type=number] { width: 100%; padding: 10px; border: 1px solid #d1d6db; border-radius: 10px; font-size: 16px; }
  button { font: inherit; }
  .primary { width: 100%; padding: 14px; border: 0; border-radius: 12px; background: var(--brand); color: #fff; font-size: 17px; font-weight: 600; margin-top: 12px; cursor: pointer; }
  .secondary { padding: 10px 14px; border: 1px solid var(--brand); border-radius: 10px; background: #fff; color: var(--brand); margin-top: 10px; cursor: pointer; }
  a.secondary { display: inline-block; text-decoration: none; }
  .primary:disabled { opacity: 0.6; cursor: progress; }
  .primary .spinner { display: inline-block; width: 14px; height: 14px; margin-right: 8px; border: 2px solid rgba(255,255,255,0.5); border-top-color: #fff; border-radius: 50%; vertical-align: -2px; animation: spin 0.8s linear infinite; }
  @keyframes spin { to { transform: rotate(360deg); } }
  .test-banner { margin: 0 0 12px; padding: 8px 12px; border-radius: 8px; background: #fff4e5; color: #8a4b00; font-size: 14px; font-weight: 600; text-align: center; }
  .order { margin: 4px 0 12px; color: #4e5968; font-size: 15px; }
  .pad { display: grid; grid-template-columns: repeat(3, 1fr); gap: 8px; margin-top: 10px; }
  .key { padding: 14px 0; font-size: 20px; border: 0; border-radius: 10px; background: #f2f4f6; cursor: pointer; }
  .key:focus-visible, .primary:focus-visible, .secondary:focus-visible, input:focus-visible { outline: 3px solid var(--brand); outline-offset: 2px; }
  .dots { letter-spacing: 8px; font-size: 24px; text-align: center; min-height: 32px; }
  #message { min-height: 20px; color: #d22030; font-weight: 600; }
  details summary { cursor: pointer; color: var(--brand); font-weight: 600; }
  [hidden] { display: none !important; }
  .waiting p { line-height: 1.5; }
  .queue-figures { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; margin: 16px 0; }
  .queue-figures div { background: #f2f4f6; border-radius: 12px; padding: 12px; }
  .queue-figures dt { font-size: 13px; color: #4e5968; }
  .queue-figures dd { margin: 4px 0 0; font-size: 26px; font-weight: 700; color: var(--brand); }
  .queue-bar { height: 6px; border-radius: 3px; background: #e5e8eb; overflow: hidden; }
  .queue-bar span { display: block; width: 30%; height: 100%; background: var(--brand); animation: slide 1.6s ease-in-out infinite; }
  @keyframes slide { from { transform: translateX(-100%); } to { transform: translateX(340%); } }
  @media (prefers-reduced-motion: reduce) { .queue-bar span { animation: none; } }
  .refresh-note { font-size: 13px; color: #6b7684; }
`;

let compiledScript: string | undefined;

/** The page's script, compiled once from `page-client.ts`, served at /assets/pay-page.js. */
export function payPageScript(): string {
  compiledScript ??= transformSync(readFileSync(new URL('./page-client.ts', import.meta.url), 'utf8'), { loader: 'ts', target: 'es2020', format: 'iife' }).code;
  return compiledScript;
}

/** The browser SDK served at /v1/brandpay.js: `KeelPay(publishableKey).requestPayment({ checkoutSession })`. */
export function renderSdk(apiBase: string): string {
  return `/* Keel Brand Pay SDK: opens the shop's branded checkout. Uses only the publishable key. */
(function (global) {
  'use strict';
  var apiBase = ${JSON.stringify(apiBase)};
  function KeelPay(publishableKey) {
    if (typeof publishableKey !== 'string' || publishableKey.indexOf('pk_') !== 0) throw new Error('KeelPay needs a publishable key (pk_...)');
    return {
      requestPayment: function (options) {
        var session = options && options.checkoutSession;
        if (typeof session !== 'string') return Promise.reject(new Error('requestPayment needs { checkoutSession: "cs_..." }'));
        return fetch(apiBase + '/v1/brandpay/checkout_sessions/' + encodeURIComponent(session), { headers: { authorization: 'Bearer ' + publishableKey } })
          .then(function (response) { return response.json().then(function (body) { if (!response.ok) throw new Error(body.error ? body.error.message : 'request failed'); return body; }); })
          .then(function (body) { var url = body.url + (options.lang ? '?lang=' + encodeURIComponent(options.lang) : ''); global.location.assign(url); return body; });
      },
    };
  }
  global.KeelPay = KeelPay;
})(window);
`;
}
