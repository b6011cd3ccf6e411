/**
 * The hosted pay page's script, run in the shopper's browser. It is served as a static file
 * (`/assets/pay-page.js`, compiled from this module when Keel starts), so the page's Content-Security-Policy
 * allows scripts from Keel's own origin only and no inline script. What the server knows (the session, the
 * language, the messages, the brand colour) comes in a JSON data block, `<script type="application/json"
 * id="keel-page">`, which the browser never executes. It talks only to the page's own `/pay/{session}/…`
 * endpoints. Type-checked with the DOM's types by `tsconfig.client.json`; Node's build leaves it out.
 */

interface PageData {
  readonly sessionId: string;
  readonly lang: 'ko' | 'en';
  readonly brandColor: string;
  readonly failUrl: string;
  readonly orderId: string;
  readonly text: {
    readonly setPin: string;
    readonly enterPin: string;
    readonly confirmPin: string;
    readonly pinMismatch: string;
    readonly expired: string;
    readonly used: string;
    readonly locked: string;
    readonly processing: string;
    readonly noMethods: string;
    readonly pay: string;
    readonly paying: string;
    readonly payAmount: string;
    /** The shopper's words for each error code the page can meet, in the page's language; `generic` otherwise. */
    readonly errors: Readonly<Record<string, string>>;
  };
}

interface PageMethod {
  readonly id: string;
  readonly card?: { readonly brand: string; readonly last4: string };
  readonly bank_account?: { readonly bank_code: string; readonly last4: string };
}

interface PageSession {
  readonly amount: number;
  readonly currency: string;
  readonly exponent: number;
  has_pin: boolean;
  readonly methods: readonly PageMethod[];
}

interface PageApproval {
  readonly status: 'open' | 'processing' | 'done';
  readonly redirect_url?: string;
}

interface PageError {
  readonly code?: string;
  readonly param?: string;
  readonly message: string;
}

(() => {
  const dataBlock = document.getElementById('keel-page');
  if (dataBlock === null) return;
  const data = JSON.parse(dataBlock.textContent ?? '{}') as PageData;
  const t = data.text;
  document.documentElement.style.setProperty('--brand', data.brandColor);
  const base = `/pay/${encodeURIComponent(data.sessionId)}`;
  const element = <T extends HTMLElement = HTMLElement>(id: string): T => document.getElementById(id) as T;
  let state: PageSession | null = null;
  const payButton = element<HTMLButtonElement>('pay');
  const say = (message: string) => {
    element('message').textContent = message;
  };
  // Two taps may both learn the result; the browser goes to it once.
  let leaving = false;
  let settingPin: Promise<void> | null = null;
  const leave = (url: string) => {
    if (leaving) return;
    leaving = true;
    window.location.assign(url);
  };

  async function call<T>(path: string, body?: unknown): Promise<T> {
    const response = await fetch(`${base}${path}?lang=${data.lang}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const json = (await response.json()) as T & { error?: PageError };
    if (!response.ok) throw json.error ?? { message: 'error' };
    return json;
  }

  function render(session: PageSession): void {
    amountText = new Intl.NumberFormat(data.lang === 'ko' ? 'ko-KR' : 'en-US', { style: 'currency', currency: session.currency }).format(
      session.amount / Math.pow(10, session.exponent),
    );
    element('amount').textContent = amountText;
    busy(false);
    const list = element('methods');
    list.textContent = '';
    session.methods.forEach((method, index) => {
      const row = document.createElement('label');
      row.className = 'method';
      const radio = document.createElement('input');
      radio.type = 'radio';
      radio.name = 'method';
      radio.value = method.id;
      radio.checked = index === 0;
      row.appendChild(radio);
      const label = method.card !== undefined ? `${method.card.brand.toUpperCase()} •••• ${method.card.last4}` : `${method.bank_account?.bank_code ?? ''} •••• ${method.bank_account?.last4 ?? ''}`;
      row.appendChild(document.createTextNode(label));
      list.appendChild(row);
    });
    element('no-methods').hidden = session.methods.length > 0;
    element('pin-title').textContent = session.has_pin ? t.enterPin : t.setPin;
  }

  /** A checkout that cannot go on (locked, expired, used): say why, and lead back to the shop's fail_url. */
  function stop(code: string): void {
    element('checkout').hidden = true;
    say(code === 'checkout_session_expired' ? t.expired : code === 'customer_locked' ? t.locked : t.used);
    const back = new URL(data.failUrl);
    back.searchParams.set('code', code);
    back.searchParams.set('orderId', data.orderId);
    element<HTMLAnchorElement>('back-to-shop').href = back.toString();
    element('back').hidden = false;
  }

  const failure = (error: unknown): PageError => (typeof error === 'object' && error !== null && 'message' in error ? (error as PageError) : { message: String(error) });

  /** The shopper's message for an error: from the page's catalogue in its language, never the API's English. */
  function messageOf(error: PageError): string {
    if (error.code === 'pin_incorrect') {
      // The API's message names the tries left ("… 3 tries remain …"); the page says it in its own words.
      const left = /(\d+) tr(?:y|ies) remain/.exec(error.message)?.[1] ?? '?';
      return (t.errors['pin_incorrect'] ?? '').replace('{n}', left);
    }
    if ((error.code === 'parameter_invalid' || error.code === 'parameter_missing') && error.param === 'pin') return t.errors['pin_invalid'] ?? '';
    if (error.code === 'parameter_invalid' || error.code === 'parameter_missing') return t.errors['card_invalid'] ?? '';
    return t.errors[error.code ?? ''] ?? t.errors['generic'] ?? '';
  }

  let amountText = '';
  /** Pay shows the amount; while a payment is in flight it is disabled and shows a progress sign. */
  function busy(inFlight: boolean): void {
    payButton.disabled = inFlight;
    payButton.setAttribute('aria-busy', String(inFlight));
    payButton.textContent = '';
    if (inFlight) {
      const spinner = document.createElement('span');
      spinner.className = 'spinner';
      spinner.setAttribute('aria-hidden', 'true');
      payButton.appendChild(spinner);
    }
    payButton.appendChild(document.createTextNode(inFlight ? t.paying : amountText === '' ? t.pay : t.payAmount.replace('{amount}', amountText)));
  }

  /**
   * Waits for a payment under way (a second tap, a reload, a partner that has not answered yet) until it has its
   * result, asking every second at first and every 5 s after a minute, for as long as the page is open.
   */
  async function awaitApproval(first: PageApproval): Promise<'left' | 'open'> {
    let result = first;
    for (let polls = 0; result.status === 'processing'; polls += 1) {
      busy(true);
      say(t.processing);
      await new Promise((resolve) => setTimeout(resolve, polls < 60 ? 1000 : 5000));
      result = await call<PageApproval>('/approval');
    }
    // Open again: the partner was not reached and nothing was charged; the shopper may approve once more.
    if (result.status === 'open') {
      busy(false);
      say('');
      return 'open';
    }
    if (result.redirect_url !== undefined) leave(result.redirect_url);
    return 'left';
  }

  async function load(): Promise<void> {
    try {
      // A page reloaded while its payment is under way (or after it ended) picks it up rather than start again.
      const approval = await call<PageApproval>('/approval');
      if (approval.status !== 'open') {
        element('checkout').hidden = true;
        if ((await awaitApproval(approval)) === 'left') return;
        element('checkout').hidden = false;
      }
      state = await call<PageSession>('/session');
      render(state);
    } catch (error) {
      const problem = failure(error);
      if (problem.code === 'customer_locked' || problem.code === 'checkout_session_expired' || problem.code === 'checkout_session_used') stop(problem.code);
      else say(messageOf(problem));
    }
  }

  document.querySelectorAll<HTMLButtonElement>('.key').forEach((key) =>
    key.addEventListener('click', () => {
      const pin = element<HTMLInputElement>('pin');
      if (key.dataset['digit'] !== undefined && pin.value.length < 6) pin.value += key.dataset['digit'];
      if (key.dataset['action'] === 'back') pin.value = pin.value.slice(0, -1);
      if (key.dataset['action'] === 'clear') pin.value = '';
    }),
  );

  function onSubmit(formId: string, detailsId: string, body: (form: FormData) => unknown): void {
    element<HTMLFormElement>(formId).addEventListener('submit', async (event) => {
      event.preventDefault();
      const form = event.target as HTMLFormElement;
      try {
        await call('/payment_methods', body(new FormData(form)));
        form.reset();
        element<HTMLDetailsElement>(detailsId).open = false;
        say('');
        await load();
      } catch (error) {
        say(messageOf(failure(error)));
      }
    });
  }
  onSubmit('card-form', 'add-card', (form) => ({
    type: 'card',
    card: { number: String(form.get('number')).replace(/\s/g, ''), exp_month: Number(form.get('exp_month')), exp_year: Number(form.get('exp_year')), cvc: String(form.get('cvc')) },
  }));
  onSubmit('bank-form', 'add-bank', (form) => ({
    type: 'bank_account',
    bank_account: { bank_code: String(form.get('bank_code')), account_number: String(form.get('account_number')), holder_name: String(form.get('holder_name')) },
  }));

  // A first PIN is entered twice: the first entry waits here until the second matches it.
  let firstPin: string | null = null;
  payButton.addEventListener('click', async () => {
    const chosen = document.querySelector<HTMLInputElement>('input[name=method]:checked');
    const pinField = element<HTMLInputElement>('pin');
    const pin = pinField.value;
    if (chosen === null || state === null) {
      say(state !== null && state.methods.length === 0 ? t.noMethods : '');
      return;
    }
    const session = state;
    if (!session.has_pin && settingPin === null) {
      if (firstPin === null) {
        if (!/^[0-9]{6}$/.test(pin)) return say(t.errors['pin_invalid'] ?? '');
        firstPin = pin;
        pinField.value = '';
        element('pin-title').textContent = t.confirmPin;
        return say('');
      }
      if (pin !== firstPin) {
        firstPin = null;
        pinField.value = '';
        element('pin-title').textContent = t.setPin;
        return say(t.pinMismatch);
      }
    }
    busy(true);
    try {
      // A second tap while the first sets the PIN waits for that same call instead of setting it again.
      if (!session.has_pin) {
        settingPin ??= call('/pin', { pin }).then(
          () => {
            session.has_pin = true;
          },
          (error: unknown) => {
            settingPin = null;
            throw error;
          },
        );
        await settingPin;
      }
      // A payment under way (a second tap while the partner answers, or a partner that has not answered yet).
      await awaitApproval(await call<PageApproval>('/approve', { payment_method: chosen.value, pin }));
    } catch (error) {
      busy(false);
      pinField.value = '';
      const problem = failure(error);
      if (problem.code === 'customer_locked' || problem.code === 'checkout_session_expired' || problem.code === 'checkout_session_used') stop(problem.code);
      else {
        // A first PIN the server refused is chosen again, twice.
        if (!session.has_pin) {
          firstPin = null;
          element('pin-title').textContent = t.setPin;
        }
        say(messageOf(problem));
      }
    }
  });

  void load();
})();
