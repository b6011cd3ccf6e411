import { sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';

/**
 * Keel's migrations, one list for PostgreSQL and PGlite. They are plain SQL so that what runs in a test on the
 * embedded engine is what runs in production. Never edit a landed migration: add one.
 */
const migrations: Record<string, Migration> = {
  '0001_payments_core': {
    async up(db: Kysely<unknown>): Promise<void> {
      await sql`
        CREATE TABLE merchants (
          id uuid PRIMARY KEY,
          name text NOT NULL,
          brand_name text NOT NULL,
          country char(2) NOT NULL,
          gateway text NOT NULL,
          partner_secret_key_encrypted text NOT NULL,
          livemode boolean NOT NULL DEFAULT false,
          created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE api_keys (
          id uuid PRIMARY KEY,
          merchant_id uuid NOT NULL REFERENCES merchants(id),
          kind text NOT NULL CHECK (kind IN ('secret', 'publishable')),
          key_hash text NOT NULL UNIQUE,
          key_hint text NOT NULL,
          revoked_at timestamptz,
          created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX api_keys_merchant ON api_keys (merchant_id);
        CREATE TABLE payments (
          id uuid PRIMARY KEY,
          merchant_id uuid NOT NULL REFERENCES merchants(id),
          order_id text NOT NULL,
          amount bigint NOT NULL CHECK (amount > 0),
          currency char(3) NOT NULL,
          country char(2) NOT NULL,
          status text NOT NULL,
          capture_method text NOT NULL,
          amount_capturable bigint NOT NULL DEFAULT 0 CHECK (amount_capturable >= 0),
          amount_received bigint NOT NULL DEFAULT 0 CHECK (amount_received >= 0 AND amount_received <= amount),
          amount_refunded bigint NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0 AND amount_refunded <= amount_received),
          gateway text NOT NULL,
          failure_code text,
          failure_message text,
          customer_id uuid,
          payment_method jsonb,
          description text,
          metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
          livemode boolean NOT NULL DEFAULT false,
          partner_payment_id text,
          correlation_id text,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          UNIQUE (merchant_id, order_id)
        );
        CREATE INDEX payments_merchant_id ON payments (merchant_id, id DESC);
        CREATE INDEX payments_merchant_status ON payments (merchant_id, status, id DESC);
        CREATE TABLE refunds (
          id uuid PRIMARY KEY,
          merchant_id uuid NOT NULL REFERENCES merchants(id),
          payment_id uuid NOT NULL REFERENCES payments(id),
          amount bigint NOT NULL CHECK (amount > 0),
          currency char(3) NOT NULL,
          status text NOT NULL,
          reason text,
          failure_code text,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX refunds_payment ON refunds (payment_id);
        CREATE TABLE payment_attempts (
          id uuid PRIMARY KEY,
          merchant_id uuid NOT NULL REFERENCES merchants(id),
          payment_id uuid NOT NULL REFERENCES payments(id),
          refund_id uuid REFERENCES refunds(id),
          operation text NOT NULL,
          status text NOT NULL,
          amount bigint NOT NULL CHECK (amount > 0),
          partner_idempotency_key text NOT NULL UNIQUE,
          partner_payment_id text,
          partner_token_encrypted text,
          failure_code text,
          failure_message text,
          inquiry_count integer NOT NULL DEFAULT 0,
          next_inquiry_at timestamptz,
          correlation_id text,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX payment_attempts_payment ON payment_attempts (payment_id);
        CREATE INDEX payment_attempts_unresolved ON payment_attempts (next_inquiry_at) WHERE status = 'unknown';
        CREATE TABLE idempotency_keys (
          id bigserial PRIMARY KEY,
          merchant_id uuid NOT NULL REFERENCES merchants(id),
          key text NOT NULL,
          request_method text NOT NULL,
          request_path text NOT NULL,
          request_hash text NOT NULL,
          recovery_point text NOT NULL,
          locked_at timestamptz,
          lock_token uuid,
          payment_id uuid,
          refund_id uuid,
          attempt_id uuid,
          response_status integer,
          response_body jsonb,
          correlation_id text,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          UNIQUE (merchant_id, key)
        );
        CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
        CREATE INDEX idempotency_keys_unfinished ON idempotency_keys (locked_at) WHERE recovery_point <> 'finished';
        CREATE TABLE outbox (
          id uuid PRIMARY KEY,
          merchant_id uuid NOT NULL REFERENCES merchants(id),
          type text NOT NULL,
          aggregate_id uuid NOT NULL,
          data jsonb NOT NULL,
          correlation_id text,
          published_at timestamptz,
          created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
        CREATE TABLE anomalies (
          id uuid PRIMARY KEY,
          merchant_id uuid NOT NULL REFERENCES merchants(id),
          kind text NOT NULL,
          payment_id uuid,
          attempt_id uuid,
          detail jsonb NOT NULL,
          resolved_at timestamptz,
          created_at timestamptz NOT NULL DEFAULT now()
        );
      `.execute(db);
    },
  },
  '0002_partner_routing': {
    async up(db: Kysely<unknown>): Promise<void> {
      await sql`
        CREATE TABLE merchant_partners (
          merchant_id uuid NOT NULL REFERENCES merchants(id),
          gateway text NOT NULL,
          priority integer NOT NULL,
          partner_secret_key_encrypted text NOT NULL,
          PRIMARY KEY (merchant_id, gateway),
          UNIQUE (merchant_id, priority)
        );
        INSERT INTO merchant_partners (merchant_id, gateway, priority, partner_secret_key_encrypted)
          SELECT id, gateway, 0, partner_secret_key_encrypted FROM merchants;
        ALTER TABLE payment_attempts ADD COLUMN gateway text;
        UPDATE payment_attempts SET gateway = payments.gateway FROM payments WHERE payments.id = payment_attempts.payment_id;
        ALTER TABLE payment_attempts ALTER COLUMN gateway SET NOT NULL;
      `.execute(db);
    },
  },
  '0003_rate_limits': {
    async up(db: Kysely<unknown>): Promise<void> {
      await sql`
        ALTER TABLE merchants ADD COLUMN rate_limit_per_second integer CHECK (rate_limit_per_second > 0);
        ALTER TABLE merchants ADD COLUMN rate_limit_burst integer CHECK (rate_limit_burst > 0);
      `.execute(db);
    },
  },
  '0004_brandpay': {
    async up(db: Kysely<unknown>): Promise<void> {
      await sql`
        ALTER TABLE merchants ADD COLUMN brand_color text NOT NULL DEFAULT '#1b64da';
        ALTER TABLE merchants ADD COLUMN brand_logo_url text;
        CREATE TABLE customers (
          id uuid PRIMARY KEY,
          merchant_id uuid NOT NULL REFERENCES merchants(id),
          customer_key text NOT NULL,
          status text NOT NULL CHECK (status IN ('active', 'locked', 'deleted')),
          pin_hash text,
          pin_salt text,
          pin_failures integer NOT NULL DEFAULT 0 CHECK (pin_failures >= 0),
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          UNIQUE (merchant_id, customer_key)
        );
        CREATE TABLE payment_methods (
          id uuid PRIMARY KEY,
          merchant_id uuid NOT NULL REFERENCES merchants(id),
          customer_id uuid NOT NULL REFERENCES customers(id),
          type text NOT NULL CHECK (type IN ('card', 'bank_account')),
          gateway text,
          token_encrypted text,
          brand text,
          last4 text NOT NULL,
          exp_month integer,
          exp_year integer,
          bank_code text,
          account_number_encrypted text,
          fingerprint text NOT NULL,
          status text NOT NULL CHECK (status IN ('active', 'detached')),
          created_at timestamptz NOT NULL DEFAULT now(),
          detached_at timestamptz
        );
        CREATE UNIQUE INDEX payment_methods_active_fingerprint ON payment_methods (merchant_id, customer_id, fingerprint) WHERE status = 'active';
        CREATE INDEX payment_methods_customer ON payment_methods (customer_id);
        ALTER TABLE payments ADD COLUMN payment_method_id uuid REFERENCES payment_methods(id);
      `.execute(db);
    },
  },
  '0005_checkout_sessions': {
    async up(db: Kysely<unknown>): Promise<void> {
      await sql`
        CREATE TABLE checkout_sessions (
          id uuid PRIMARY KEY,
          merchant_id uuid NOT NULL REFERENCES merchants(id),
          customer_id uuid NOT NULL REFERENCES customers(id),
          amount bigint NOT NULL CHECK (amount > 0),
          currency char(3) NOT NULL,
          order_id text NOT NULL,
          country char(2) NOT NULL,
          success_url text NOT NULL,
          fail_url text NOT NULL,
          status text NOT NULL CHECK (status IN ('open', 'approved', 'completed', 'expired')),
          payment_id uuid REFERENCES payments(id),
          expires_at timestamptz NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now(),
          UNIQUE (merchant_id, order_id)
        );
      `.execute(db);
    },
  },
  '0006_inbox': {
    async up(db: Kysely<unknown>): Promise<void> {
      await sql`
        CREATE TABLE inbox (
          consumer text NOT NULL,
          event_id uuid NOT NULL,
          processed_at timestamptz NOT NULL DEFAULT now(),
          PRIMARY KEY (consumer, event_id)
        );
        CREATE TABLE leases (
          name text PRIMARY KEY,
          holder text NOT NULL,
          expires_at timestamptz NOT NULL
        );
      `.execute(db);
    },
  },
  '0007_webhooks': {
    async up(db: Kysely<unknown>): Promise<void> {
      await sql`
        CREATE TABLE webhook_endpoints (
          id uuid PRIMARY KEY,
          merchant_id uuid NOT NULL REFERENCES merchants(id),
          url text NOT NULL,
          events jsonb NOT NULL,
          secret_encrypted text NOT NULL,
          created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX webhook_endpoints_merchant ON webhook_endpoints (merchant_id);
        CREATE TABLE webhook_deliveries (
          id uuid PRIMARY KEY,
          merchant_id uuid NOT NULL REFERENCES merchants(id),
          endpoint_id uuid NOT NULL REFERENCES webhook_endpoints(id),
          event_id uuid NOT NULL,
          event_type text NOT NULL,
          payload text NOT NULL,
          status text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
          attempts integer NOT NULL DEFAULT 0,
          next_attempt_at timestamptz,
          last_status_code integer,
          last_latency_ms integer,
          last_error text,
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
        CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id DESC);
      `.execute(db);
    },
  },
  '0008_ledger': {
    async up(db: Kysely<unknown>): Promise<void> {
      await sql`
        CREATE TABLE ledger_transactions (
          id uuid PRIMARY KEY,
          merchant_id uuid NOT NULL REFERENCES merchants(id),
          kind text NOT NULL CHECK (kind IN ('capture', 'refund', 'capture_reversal', 'settlement')),
          payment_id uuid REFERENCES payments(id),
          refund_id uuid REFERENCES refunds(id),
          created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX ledger_transactions_merchant ON ledger_transactions (merchant_id, id);
        CREATE TABLE ledger_entries (
          id bigserial PRIMARY KEY,
          transaction_id uuid NOT NULL REFERENCES ledger_transactions(id),
          merchant_id uuid NOT NULL REFERENCES merchants(id),
          account text NOT NULL,
          currency char(3) NOT NULL,
          amount bigint NOT NULL CHECK (amount <> 0)
        );
        CREATE INDEX ledger_entries_account ON ledger_entries (merchant_id, account, currency);
        CREATE INDEX ledger_entries_transaction ON ledger_entries (transaction_id);
      `.execute(db);
    },
  },
  '0009_settlements': {
    async up(db: Kysely<unknown>): Promise<void> {
      await sql`
        ALTER TABLE ledger_transactions ADD COLUMN external_reference text;
        CREATE UNIQUE INDEX ledger_transactions_external ON ledger_transactions (merchant_id, external_reference) WHERE external_reference IS NOT NULL;
      `.execute(db);
    },
  },
  '0010_reports': {
    async up(db: Kysely<unknown>): Promise<void> {
      await sql`
        CREATE TABLE report_payments_daily (
          merchant_id uuid NOT NULL REFERENCES merchants(id),
          day date NOT NULL,
          currency char(3) NOT NULL,
          country char(2) NOT NULL,
          gateway text NOT NULL,
          shard smallint NOT NULL,
          created bigint NOT NULL DEFAULT 0,
          authorized bigint NOT NULL DEFAULT 0,
          failed bigint NOT NULL DEFAULT 0,
          canceled bigint NOT NULL DEFAULT 0,
          captured bigint NOT NULL DEFAULT 0,
          amount_captured bigint NOT NULL DEFAULT 0,
          refunds bigint NOT NULL DEFAULT 0,
          amount_refunded bigint NOT NULL DEFAULT 0,
          PRIMARY KEY (merchant_id, day, currency, country, gateway, shard)
        );
        CREATE TABLE report_payment_failures (
          merchant_id uuid NOT NULL REFERENCES merchants(id),
          day date NOT NULL,
          currency char(3) NOT NULL,
          country char(2) NOT NULL,
          gateway text NOT NULL,
          failure_code text NOT NULL,
          shard smallint NOT NULL,
          count bigint NOT NULL DEFAULT 0,
          PRIMARY KEY (merchant_id, day, currency, country, gateway, failure_code, shard)
        );
        CREATE TABLE projections (
          name text PRIMARY KEY,
          rebuilt_at timestamptz NOT NULL,
          events_replayed bigint NOT NULL
        );
      `.execute(db);
    },
  },
  '0011_outbox_partitions': {
    async up(db: Kysely<unknown>): Promise<void> {
      // A merchant's events share a relay partition (the low 4 bits of its id, which are random), so relays on
      // several workers publish different partitions at once while each payment's events stay in order.
      await sql`
        ALTER TABLE outbox ADD COLUMN relay_partition smallint GENERATED ALWAYS AS ((get_byte(uuid_send(merchant_id), 15) & 15)::smallint) STORED;
        CREATE INDEX outbox_unpublished_partition ON outbox (relay_partition, id) WHERE published_at IS NULL;
        DROP INDEX outbox_unpublished;
      `.execute(db);
    },
  },
  '0012_attempt_resends': {
    async up(db: Kysely<unknown>): Promise<void> {
      // An attempt may be sent again under its own partner idempotency key (the partner replays the first
      // answer): when it was last sent bounds how stale a "no such charge" may be, the source fingerprint says
      // whether a confirm carries the same card, and the reason is what a cancel or refund sent.
      await sql`
        ALTER TABLE payment_attempts ADD COLUMN last_sent_at timestamptz NOT NULL DEFAULT now();
        ALTER TABLE payment_attempts ADD COLUMN source_fingerprint text;
        ALTER TABLE payment_attempts ADD COLUMN reason text;
      `.execute(db);
    },
  },
  '0013_sealed_responses': {
    async up(db: Kysely<unknown>): Promise<void> {
      // A stored idempotent response that holds a secret (a webhook endpoint's signing secret) is kept
      // encrypted, in place of response_body. Request digests become keyed HMACs: a digest stored by an
      // earlier version cannot match one computed now, so keys still open keep their digest until they finish.
      await sql`ALTER TABLE idempotency_keys ADD COLUMN response_sealed text`.execute(db);
    },
  },
  '0014_delivery_leases': {
    async up(db: Kysely<unknown>): Promise<void> {
      // Who holds a webhook delivery's lease: only the holder may write its result.
      await sql`ALTER TABLE webhook_deliveries ADD COLUMN lease_token uuid`.execute(db);
    },
  },
  '0015_retention': {
    async up(db: Kysely<unknown>): Promise<void> {
      // Retention prunes by age: each pruned table gets an index on the age it is pruned by, and the outbox's
      // mark records before when it holds no events any more.
      await sql`
        CREATE TABLE retention_marks (name text PRIMARY KEY, pruned_before timestamptz NOT NULL);
        CREATE INDEX outbox_published_created ON outbox (created_at) WHERE published_at IS NOT NULL;
        CREATE INDEX inbox_processed ON inbox (processed_at);
        CREATE INDEX webhook_deliveries_settled ON webhook_deliveries (updated_at) WHERE status IN ('succeeded', 'failed');
        CREATE INDEX checkout_sessions_unused ON checkout_sessions (expires_at) WHERE payment_id IS NULL;
      `.execute(db);
    },
  },
  '0016_live_merchants': {
    async up(db: Kysely<unknown>): Promise<void> {
      // A live merchant may be created before it has a key at every partner it lists: no key, no payment there.
      await sql`
        ALTER TABLE merchant_partners ALTER COLUMN partner_secret_key_encrypted DROP NOT NULL;
        ALTER TABLE merchants ALTER COLUMN partner_secret_key_encrypted DROP NOT NULL;
      `.execute(db);
    },
  },
  '0017_lists': {
    async up(db: Kysely<unknown>): Promise<void> {
      // Cursor lists walk each merchant's rows newest first; webhook endpoints can be disabled and deleted
      // (deleted ones are kept, hidden, so their delivery history still names them).
      await sql`
        CREATE INDEX outbox_merchant_id ON outbox (merchant_id, id DESC);
        CREATE INDEX outbox_merchant_type_id ON outbox (merchant_id, type, id DESC);
        CREATE INDEX refunds_merchant_id ON refunds (merchant_id, id DESC);
        CREATE INDEX customers_merchant_id ON customers (merchant_id, id DESC);
        ALTER TABLE webhook_endpoints ADD COLUMN disabled boolean NOT NULL DEFAULT false;
        ALTER TABLE webhook_endpoints ADD COLUMN deleted_at timestamptz;
      `.execute(db);
    },
  },
  '0018_deployment_identity': {
    async up(db: Kysely<unknown>): Promise<void> {
      // The deployment's identity lives in its database: every instance on this database (and schema) shares it,
      // and another database is another deployment. Its event stream, subjects and consumers are named from it.
      // The stream changes name with this migration, so events published to the earlier stream that a consumer
      // had not yet applied (no inbox entry; only the last day's can be pending) are published again, to the new
      // stream; the inbox drops what a consumer already applied.
      await sql`
        CREATE TABLE deployment (
          singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
          id uuid NOT NULL DEFAULT gen_random_uuid(),
          created_at timestamptz NOT NULL DEFAULT now()
        );
        INSERT INTO deployment DEFAULT VALUES;
        UPDATE outbox SET published_at = NULL
        WHERE published_at IS NOT NULL AND created_at > now() - interval '1 day'
          AND (NOT EXISTS (SELECT 1 FROM inbox WHERE inbox.event_id = outbox.id AND inbox.consumer = 'webhooks')
            OR NOT EXISTS (SELECT 1 FROM inbox WHERE inbox.event_id = outbox.id AND inbox.consumer = 'projections'));
      `.execute(db);
    },
  },
  '0019_report_not_sent': {
    async up(db: Kysely<unknown>): Promise<void> {
      // Confirmations refused before anything was sent (breaker open, bulkhead full, connection refused).
      await sql`ALTER TABLE report_payments_daily ADD COLUMN not_sent bigint NOT NULL DEFAULT 0`.execute(db);
    },
  },
  '0020_checkout_order_name': {
    async up(db: Kysely<unknown>): Promise<void> {
      // What the shopper is buying, shown on the hosted page and sent to the partner (Toss orderName).
      await sql`ALTER TABLE checkout_sessions ADD COLUMN order_name text`.execute(db);
    },
  },
  '0021_typed_anomalies': {
    async up(db: Kysely<unknown>): Promise<void> {
      // Anomalies become typed records with Keel's and the partner's side, a status and a resolution; the
      // janitor's unanswered attempts are StuckProcessing. A dedupe key per merchant and type makes opening one
      // idempotent (a reconciliation run twice opens nothing twice).
      await sql`
        ALTER TABLE anomalies ADD COLUMN type text;
        UPDATE anomalies SET type = CASE kind WHEN 'UnresolvedAttempt' THEN 'StuckProcessing' ELSE kind END;
        ALTER TABLE anomalies ALTER COLUMN type SET NOT NULL;
        ALTER TABLE anomalies ADD COLUMN status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved'));
        UPDATE anomalies SET status = 'resolved' WHERE resolved_at IS NOT NULL;
        ALTER TABLE anomalies ADD COLUMN gateway text;
        ALTER TABLE anomalies ADD COLUMN refund_id uuid;
        ALTER TABLE anomalies ADD COLUMN order_id text;
        ALTER TABLE anomalies ADD COLUMN partner_reference text;
        ALTER TABLE anomalies ADD COLUMN expected jsonb;
        ALTER TABLE anomalies ADD COLUMN actual jsonb;
        ALTER TABLE anomalies ADD COLUMN resolution jsonb;
        ALTER TABLE anomalies ADD COLUMN dedupe_key text;
        UPDATE anomalies SET dedupe_key = attempt_id::text WHERE attempt_id IS NOT NULL;
        CREATE UNIQUE INDEX anomalies_dedupe ON anomalies (merchant_id, type, dedupe_key);
        CREATE INDEX anomalies_merchant_id ON anomalies (merchant_id, id DESC);
        CREATE INDEX anomalies_open ON anomalies (type, gateway) WHERE status = 'open';
      `.execute(db);
    },
  },
  '0022_reconciliation_runs': {
    async up(db: Kysely<unknown>): Promise<void> {
      await sql`
        CREATE TABLE reconciliation_runs (
          id uuid PRIMARY KEY,
          gateway text NOT NULL,
          day date NOT NULL,
          merchant_id uuid REFERENCES merchants(id),
          status text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
          rows_read integer NOT NULL DEFAULT 0,
          matched integer NOT NULL DEFAULT 0,
          anomalies_opened integer NOT NULL DEFAULT 0,
          anomalies_resolved integer NOT NULL DEFAULT 0,
          error text,
          started_at timestamptz NOT NULL DEFAULT now(),
          finished_at timestamptz
        );
        CREATE INDEX reconciliation_runs_day ON reconciliation_runs (day DESC, id DESC);
      `.execute(db);
    },
  },
  '0023_reconciliation_at_scale': {
    async up(db: Kysely<unknown>): Promise<void> {
      // A run stages the partner's report rows (unlogged: they can always be read from the partner again), each
      // already joined to the payment it names, and compares them with Keel's records in set-based queries;
      // the indexes serve a payment's lookup by the partner's id and a day's captures and refunds. A shop's
      // negotiated fee at a partner is kept with the partner (null: the partner's standard pricing).
      await sql`
        CREATE UNLOGGED TABLE reconciliation_rows (
          run_id uuid NOT NULL,
          merchant_id uuid NOT NULL,
          reference text NOT NULL,
          partner_payment_id text NOT NULL,
          kind text NOT NULL CHECK (kind IN ('sale', 'refund')),
          order_id text,
          currency text NOT NULL,
          gross bigint NOT NULL,
          fee bigint NOT NULL,
          contract_fee bigint NOT NULL,
          payment_id uuid
        );
        CREATE INDEX reconciliation_rows_payment ON reconciliation_rows (run_id, payment_id, reference);
        CREATE INDEX reconciliation_rows_unmatched ON reconciliation_rows (run_id, (coalesce(order_id, reference))) WHERE payment_id IS NULL;
        CREATE INDEX payments_partner_payment_id ON payments (merchant_id, partner_payment_id) WHERE partner_payment_id IS NOT NULL;
        CREATE INDEX ledger_transactions_kind_created ON ledger_transactions (merchant_id, kind, created_at);
        CREATE INDEX refunds_merchant_created ON refunds (merchant_id, created_at);
        ALTER TABLE merchant_partners ADD COLUMN fee_rate_bps integer CHECK (fee_rate_bps BETWEEN 0 AND 10000);
        ALTER TABLE merchant_partners ADD COLUMN fee_fixed bigint CHECK (fee_fixed >= 0);
      `.execute(db);
    },
  },
  '0024_settlement_discharges_receivable': {
    async up(db: Kysely<unknown>): Promise<void> {
      // Every journal transaction gets the UTC day it took effect at the partner (a capture or refund: the day
      // its request was sent; a settlement: its payout day), which reconciliation compares by; the rows before
      // take the day they were written. A settlement now also discharges the partner's receivable into what it
      // has settled: those booked before get the two entries they lacked (the gross is their merchant_pending
      // debit; the partner, their reference's prefix).
      await sql`
        ALTER TABLE ledger_transactions ADD COLUMN effective_date date;
        UPDATE ledger_transactions SET effective_date = (created_at AT TIME ZONE 'UTC')::date;
        ALTER TABLE ledger_transactions ALTER COLUMN effective_date SET NOT NULL,
          ALTER COLUMN effective_date SET DEFAULT ((now() AT TIME ZONE 'UTC')::date);
        DROP INDEX ledger_transactions_kind_created;
        CREATE INDEX ledger_transactions_kind_effective ON ledger_transactions (merchant_id, kind, effective_date);
        INSERT INTO ledger_entries (transaction_id, merchant_id, account, currency, amount)
        SELECT t.id, t.merchant_id, side.account || split_part(t.external_reference, ':', 1), e.currency, side.sign * e.amount
        FROM ledger_transactions t
        JOIN ledger_entries e ON e.transaction_id = t.id AND e.account = 'merchant_pending'
        CROSS JOIN (VALUES ('partner_receivable:', -1), ('partner_settled:', 1)) AS side(account, sign)
        WHERE t.kind = 'settlement';
      `.execute(db);
    },
  },
  '0025_incidents': {
    async up(db: Kysely<unknown>): Promise<void> {
      // Incidents, run by people (roles, messages, statuses) and opened by alerts; their timelines; the
      // post-mortems that come due after them and their action items; and the chat notices the workers send.
      await sql`
        CREATE TABLE incidents (
          id uuid PRIMARY KEY,
          title text NOT NULL,
          severity text NOT NULL CHECK (severity IN ('sev1', 'sev2', 'sev3')),
          status text NOT NULL DEFAULT 'investigating' CHECK (status IN ('investigating', 'identified', 'monitoring', 'resolved')),
          source text NOT NULL CHECK (source IN ('manual', 'alert', 'chat')),
          summary text,
          channel text,
          group_key text,
          imoc text,
          srm text,
          gateways text[] NOT NULL DEFAULT '{}',
          countries text[] NOT NULL DEFAULT '{}',
          started_at timestamptz NOT NULL,
          detected_at timestamptz NOT NULL,
          mitigated_at timestamptz,
          resolved_at timestamptz,
          created_at timestamptz NOT NULL DEFAULT now(),
          CHECK (started_at <= detected_at),
          CHECK (mitigated_at IS NULL OR detected_at <= mitigated_at),
          CHECK (resolved_at IS NULL OR (mitigated_at IS NOT NULL AND mitigated_at <= resolved_at)),
          CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
        );
        CREATE UNIQUE INDEX incidents_open_group ON incidents (group_key) WHERE status <> 'resolved' AND group_key IS NOT NULL;
        CREATE INDEX incidents_channel ON incidents (channel, id DESC) WHERE channel IS NOT NULL;
        CREATE INDEX incidents_status ON incidents (status, id DESC);
        CREATE TABLE incident_owners (
          incident_id uuid NOT NULL REFERENCES incidents(id),
          service text NOT NULL,
          person text NOT NULL,
          PRIMARY KEY (incident_id, service)
        );
        CREATE TABLE incident_alerts (
          incident_id uuid NOT NULL REFERENCES incidents(id),
          fingerprint text NOT NULL,
          status text NOT NULL CHECK (status IN ('firing', 'resolved')),
          starts_at timestamptz NOT NULL,
          PRIMARY KEY (incident_id, fingerprint)
        );
        CREATE TABLE incident_timeline (
          id bigserial PRIMARY KEY,
          incident_id uuid NOT NULL REFERENCES incidents(id),
          at timestamptz NOT NULL DEFAULT now(),
          kind text NOT NULL CHECK (kind IN ('alert', 'role', 'message', 'status', 'system')),
          text text NOT NULL,
          author text,
          important boolean NOT NULL DEFAULT false,
          dedupe_key text
        );
        CREATE INDEX incident_timeline_incident ON incident_timeline (incident_id, at, id);
        CREATE UNIQUE INDEX incident_timeline_once ON incident_timeline (incident_id, dedupe_key) WHERE dedupe_key IS NOT NULL;
        CREATE TABLE postmortems (
          id uuid PRIMARY KEY,
          incident_id uuid NOT NULL UNIQUE REFERENCES incidents(id),
          status text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'in_review', 'published')),
          due_at timestamptz NOT NULL,
          summary text,
          what_happened text,
          wrong_assumptions jsonb NOT NULL DEFAULT '[]',
          timeline jsonb NOT NULL DEFAULT '[]',
          outage jsonb NOT NULL DEFAULT '{}',
          created_at timestamptz NOT NULL DEFAULT now(),
          updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX postmortems_due ON postmortems (status, due_at);
        CREATE TABLE action_items (
          id uuid PRIMARY KEY,
          postmortem_id uuid NOT NULL REFERENCES postmortems(id),
          text text NOT NULL,
          owner text NOT NULL,
          due_at timestamptz,
          status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done')),
          created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX action_items_postmortem ON action_items (postmortem_id, id);
        CREATE TABLE chat_notices (
          id bigserial PRIMARY KEY,
          text text NOT NULL,
          dedupe_key text UNIQUE,
          attempts integer NOT NULL DEFAULT 0,
          next_attempt_at timestamptz NOT NULL DEFAULT now(),
          sent_at timestamptz,
          created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX chat_notices_due ON chat_notices (next_attempt_at) WHERE sent_at IS NULL;
        CREATE TABLE chat_requests (
          signature text PRIMARY KEY,
          received_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX chat_requests_received ON chat_requests (received_at);
        ALTER TABLE incidents ADD COLUMN outage jsonb;
      `.execute(db);
    },
  },
  '0026_statement_guard': {
    async up(db: Kysely<unknown>): Promise<void> {
      // A guard a single statement can end with: a write whose condition missed (a fenced key, a state that moved)
      // raises, so the whole statement — every data-modifying CTE in it — rolls back.
      await sql`
        CREATE FUNCTION keel_assert(ok boolean, what text) RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN
          IF ok IS NOT TRUE THEN
            RAISE EXCEPTION 'keel guard missed: %', what USING ERRCODE = 'KEEL1';
          END IF;
          RETURN true;
        END
        $$;
      `.execute(db);
    },
  },
  '0027_follow_up_starts': {
    async up(db: Kysely<unknown>): Promise<void> {
      // The first phase of a capture or a refund in one statement (payments/operations/capture.ts, refund.ts): the key
      // inserted at attempt_created, the payment locked and checked, the attempt (and the refund) written. A
      // function, not a CTE: its statements after the lock read a snapshot taken after the lock was granted, so
      // an attempt another request committed while this one waited is seen; a CTE's reads would all use the
      // snapshot from before the wait. An existing key answers NULL having written nothing; a payment in no state
      // for the operation raises KEEL1, the key's insert undone with everything else. The payment comes back as
      // JSON with its amounts as text (a JSON number would round amounts above 2^53).
      await sql`
        CREATE FUNCTION keel_payment_json(p payments) RETURNS jsonb LANGUAGE sql STABLE AS $$
          SELECT to_jsonb(p) || jsonb_build_object('amount', p.amount::text, 'amount_capturable', p.amount_capturable::text,
            'amount_received', p.amount_received::text, 'amount_refunded', p.amount_refunded::text)
        $$;
        -- The key inserted already at attempt_created, locked by its request; NULL when the key exists.
        CREATE FUNCTION keel_claim_key(p_merchant uuid, p_key text, p_method text, p_path text, p_hash text, p_lock_token uuid,
          p_correlation_id text, p_payment uuid, p_refund uuid, p_attempt uuid)
        RETURNS bigint LANGUAGE sql AS $$
          INSERT INTO idempotency_keys (merchant_id, key, request_method, request_path, request_hash, recovery_point, locked_at, lock_token, payment_id, refund_id, attempt_id, correlation_id)
          VALUES (p_merchant, p_key, p_method, p_path, p_hash, 'attempt_created', now(), p_lock_token, p_payment, p_refund, p_attempt, p_correlation_id)
          ON CONFLICT (merchant_id, key) DO NOTHING
          RETURNING id
        $$;
        CREATE FUNCTION keel_capture_start(p_merchant uuid, p_key text, p_method text, p_path text, p_hash text, p_lock_token uuid,
          p_correlation_id text, p_payment uuid, p_attempt uuid, p_partner_key text, p_amount bigint, p_now timestamptz)
        RETURNS jsonb LANGUAGE plpgsql AS $$
        DECLARE
          p payments;
          capture_amount bigint;
          token text;
          key_id bigint;
        BEGIN
          key_id := keel_claim_key(p_merchant, p_key, p_method, p_path, p_hash, p_lock_token, p_correlation_id, p_payment, NULL, p_attempt);
          IF key_id IS NULL THEN
            RETURN NULL;
          END IF;
          SELECT * INTO p FROM payments WHERE id = p_payment AND merchant_id = p_merchant FOR UPDATE;
          capture_amount := coalesce(p_amount, p.amount_capturable);
          IF p.id IS NULL OR p.status <> 'requires_capture' OR capture_amount > p.amount_capturable OR capture_amount <= 0
            OR EXISTS (SELECT 1 FROM payment_attempts WHERE merchant_id = p_merchant AND payment_id = p_payment AND status IN ('pending', 'unknown')) THEN
            RAISE EXCEPTION 'keel guard missed: the payment can be captured' USING ERRCODE = 'KEEL1';
          END IF;
          INSERT INTO payment_attempts (id, merchant_id, payment_id, gateway, operation, status, amount, partner_idempotency_key, partner_payment_id, created_at, updated_at)
          VALUES (p_attempt, p_merchant, p_payment, p.gateway, 'capture', 'pending', capture_amount, p_partner_key, p.partner_payment_id, p_now, p_now);
          SELECT partner_token_encrypted INTO token FROM payment_attempts
          WHERE merchant_id = p_merchant AND payment_id = p_payment AND operation = 'authorize' AND status = 'succeeded'
          ORDER BY id DESC LIMIT 1;
          RETURN jsonb_build_object('key_id', key_id::text, 'payment', keel_payment_json(p), 'amount', capture_amount::text, 'token', token, 'last_sent_at', now());
        END
        $$;
        CREATE FUNCTION keel_refund_start(p_merchant uuid, p_key text, p_method text, p_path text, p_hash text, p_lock_token uuid,
          p_correlation_id text, p_payment uuid, p_refund uuid, p_attempt uuid, p_partner_key text, p_amount bigint, p_reason text,
          p_attempt_reason text, p_now timestamptz)
        RETURNS jsonb LANGUAGE plpgsql AS $$
        DECLARE
          p payments;
          refundable bigint;
          refund_amount bigint;
          key_id bigint;
        BEGIN
          key_id := keel_claim_key(p_merchant, p_key, p_method, p_path, p_hash, p_lock_token, p_correlation_id, p_payment, p_refund, p_attempt);
          IF key_id IS NULL THEN
            RETURN NULL;
          END IF;
          SELECT * INTO p FROM payments WHERE id = p_payment AND merchant_id = p_merchant FOR UPDATE;
          -- Unfinished refunds count against what remains, as in the general path (operations/refund.ts).
          refundable := p.amount_received - p.amount_refunded
            - (SELECT coalesce(sum(amount), 0) FROM refunds WHERE merchant_id = p_merchant AND payment_id = p_payment AND status = 'pending');
          refund_amount := coalesce(p_amount, refundable);
          IF p.id IS NULL OR p.status <> 'succeeded' OR refund_amount <= 0 OR refund_amount > refundable THEN
            RAISE EXCEPTION 'keel guard missed: the payment can be refunded' USING ERRCODE = 'KEEL1';
          END IF;
          INSERT INTO refunds (id, merchant_id, payment_id, amount, currency, status, reason, created_at, updated_at)
          VALUES (p_refund, p_merchant, p_payment, refund_amount, p.currency, 'pending', p_reason, p_now, p_now);
          INSERT INTO payment_attempts (id, merchant_id, payment_id, refund_id, gateway, operation, status, amount, partner_idempotency_key, partner_payment_id, reason, created_at, updated_at)
          VALUES (p_attempt, p_merchant, p_payment, p_refund, p.gateway, 'refund', 'pending', refund_amount, p_partner_key, p.partner_payment_id, p_attempt_reason, p_now, p_now);
          RETURN jsonb_build_object('key_id', key_id::text, 'payment', keel_payment_json(p), 'amount', refund_amount::text, 'last_sent_at', now());
        END
        $$;
      `.execute(db);
    },
  },
};

export const migrationProvider: MigrationProvider = {
  getMigrations: () => Promise.resolve(migrations),
};
