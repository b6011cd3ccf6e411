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
  readonly text: { readonly setPin: string; readonly enterPin: string; readonly expired: string; readonly used: string; readonly locked: string; readonly processing: string; readonly noMethods: string };
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
    element('amount').textContent = new Intl.NumberFormat(data.lang === 'ko' ? 'ko-KR' : 'en-US', { style: 'currency', currency: session.currency }).format(
      session.amount / Math.pow(10, session.exponent),
    );
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

  function stop(code: string): void {
    element('checkout').hidden = true;
    say(code === 'checkout_session_expired' ? t.expired : code === 'customer_locked' ? t.locked : t.used);
  }

  const failure = (error: unknown): PageError => (typeof error === 'object' && error !== null && 'message' in error ? (error as PageError) : { message: String(error) });

  async function load(): Promise<void> {
    try {
      state = await call<PageSession>('/session');
      render(state);
    } catch (error) {
      const { code, message } = failure(error);
      if (code !== undefined) stop(code);
      else say(message);
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
        say(failure(error).message);
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

  const payButton = element<HTMLButtonElement>('pay');
  payButton.addEventListener('click', async () => {
    const chosen = document.querySelector<HTMLInputElement>('input[name=method]:checked');
    const pin = element<HTMLInputElement>('pin').value;
    if (chosen === null || state === null) {
      say(state !== null && state.methods.length === 0 ? t.noMethods : '');
      return;
    }
    const session = state;
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
      let result = await call<PageApproval>('/approve', { payment_method: chosen.value, pin });
      // A payment already under way (a second tap while the partner answers): wait for its result.
      for (let polls = 0; result.status !== 'done' && polls < 120; polls += 1) {
        payButton.disabled = true;
        say(t.processing);
        await new Promise((resolve) => setTimeout(resolve, 1000));
        result = await call<PageApproval>('/approval');
      }
      if (result.status === 'done' && result.redirect_url !== undefined) leave(result.redirect_url);
    } catch (error) {
      payButton.disabled = false;
      element<HTMLInputElement>('pin').value = '';
      const { code, message } = failure(error);
      if (code === 'customer_locked' || code === 'checkout_session_expired' || code === 'checkout_session_used') stop(code);
      else say(message);
    }
  });

  void load();
})();
