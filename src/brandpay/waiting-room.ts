import { html, type Html } from '../http/html.js';
import type { Language, PageBrand } from './page.js';

/**
 * The checkout queue's waiting room, shown at `/pay/{cs}` while the shopper waits: their place, the estimated
 * wait, and a `<meta http-equiv="refresh">` that reloads the page (no script, so it works with the pay page's
 * strict CSP and without JavaScript). The reload asks again with the `keel_queue` cookie; once admitted, the
 * same address answers the pay page.
 */
const text = {
  ko: {
    title: '잠시만 기다려 주세요',
    heading: '결제 대기 중',
    intro: '지금 결제하려는 분이 많아 순서대로 안내하고 있습니다. 이 창을 닫지 마세요. 차례가 되면 결제 화면이 자동으로 열립니다.',
    position: '내 앞의 대기 순서',
    wait: '예상 대기 시간',
    seconds: (value: number) => (value < 60 ? `약 ${Math.max(1, Math.round(value))}초` : `약 ${Math.round(value / 60)}분`),
    refresh: (value: number) => `${value}초마다 자동으로 새로 고칩니다.`,
    order: '주문',
    testMode: '테스트 결제입니다. 실제 돈은 오가지 않습니다.',
  },
  en: {
    title: 'Please wait',
    heading: 'You are in the queue',
    intro: 'Many shoppers are checking out right now, so we let them in in order. Keep this page open: the checkout opens by itself when it is your turn.',
    position: 'Your place in the queue',
    wait: 'Estimated wait',
    seconds: (value: number) => (value < 60 ? `about ${Math.max(1, Math.round(value))} s` : `about ${Math.round(value / 60)} min`),
    refresh: (value: number) => `This page refreshes itself every ${value} s.`,
    order: 'Order',
    testMode: 'Test mode: no real money moves.',
  },
} as const;

/** How often the waiting room reloads: half the estimated wait, between 1 and 10 seconds. */
export function refreshSeconds(estimatedWaitS: number): number {
  return Math.min(10, Math.max(1, Math.round(estimatedWaitS / 2)));
}

export interface WaitingRoom {
  readonly position: number;
  readonly estimatedWaitS: number;
  readonly orderLabel: string;
  readonly testMode: boolean;
}

export function renderWaitingRoom(brand: PageBrand, room: WaitingRoom, language: Language): Html {
  const t = text[language];
  const refresh = refreshSeconds(room.estimatedWaitS);
  const logo = brand.logoUrl !== null && /^https?:\/\//.test(brand.logoUrl) ? html`<img src="${brand.logoUrl}" alt="" class="logo">` : '';
  return html`<!doctype html>
<html lang="${language}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="${refresh}">
<title>${brand.name} · ${t.title}</title>
<link rel="stylesheet" href="/assets/pay-page.css">
</head>
<body>
<main>
  ${room.testMode ? html`<p class="test-banner">${t.testMode}</p>` : ''}
  <header>${logo}<h1>${brand.name}</h1></header>
  <p class="order">${t.order} · ${room.orderLabel}</p>
  <section class="waiting" aria-live="polite">
    <h2>${t.heading}</h2>
    <p>${t.intro}</p>
    <dl class="queue-figures">
      <div><dt>${t.position}</dt><dd id="queue-position">${room.position}</dd></div>
      <div><dt>${t.wait}</dt><dd id="queue-wait">${t.seconds(room.estimatedWaitS)}</dd></div>
    </dl>
    <div class="queue-bar" aria-hidden="true"><span></span></div>
    <p class="refresh-note">${t.refresh(refresh)}</p>
  </section>
</main>
</body>
</html>`;
}
