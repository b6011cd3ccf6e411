import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely';

/**
 * Database rows, as Kysely sees them. These are the storage layer's types: modules convert them to domain
 * objects, and routes convert those to API objects; a row never leaves its module.
 */

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
/** bigint columns come back as strings from both drivers; repositories convert them to bigint. */
type Money = ColumnType<string, bigint | string, bigint | string>;
type Json<T> = ColumnType<T, string, string>;
/** Counters of the read models: bigint, read as strings, written as numbers or bigints. */
type Counter = ColumnType<string, bigint | number | undefined, bigint | number>;
/** `date` columns: read them as text (`to_char`), the drivers turn bare dates into local-midnight Dates. */
type Day = ColumnType<unknown, string, string>;

export interface MerchantsTable {
  id: string;
  name: string;
  brand_name: string;
  country: string;
  gateway: string;
  partner_secret_key_encrypted: string | null;
  livemode: ColumnType<boolean, boolean | undefined, boolean>;
  rate_limit_per_second: number | null;
  rate_limit_burst: number | null;
  brand_color: ColumnType<string, string | undefined, string>;
  brand_logo_url: string | null;
  created_at: Timestamp;
}

export interface ApiKeysTable {
  id: string;
  merchant_id: string;
  kind: 'secret' | 'publishable';
  key_hash: string;
  key_hint: string;
  revoked_at: NullableTimestamp;
  created_at: Timestamp;
}

export interface PaymentsTable {
  id: string;
  merchant_id: string;
  order_id: string;
  amount: Money;
  currency: string;
  country: string;
  status: string;
  capture_method: string;
  amount_capturable: Money;
  amount_received: Money;
  amount_refunded: Money;
  gateway: string;
  failure_code: string | null;
  failure_message: string | null;
  customer_id: string | null;
  payment_method: ColumnType<Record<string, unknown> | null, string | null | undefined, string | null>;
  description: string | null;
  metadata: Json<Record<string, string>>;
  livemode: ColumnType<boolean, boolean | undefined, boolean>;
  partner_payment_id: string | null;
  correlation_id: string | null;
  payment_method_id: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface MerchantPartnersTable {
  merchant_id: string;
  gateway: string;
  priority: number;
  /** Null: a live merchant that has no key at this partner yet (payments routed there are refused). */
  partner_secret_key_encrypted: string | null;
  /** The shop's negotiated fee at this partner (basis points, fixed minor units); null: standard pricing. */
  fee_rate_bps: ColumnType<number | null, number | null | undefined, number | null>;
  fee_fixed: ColumnType<string | null, bigint | null | undefined, bigint | null>;
}

export interface AttemptsTable {
  id: string;
  merchant_id: string;
  payment_id: string;
  gateway: string;
  refund_id: string | null;
  operation: string;
  status: string;
  amount: Money;
  partner_idempotency_key: string;
  partner_payment_id: string | null;
  partner_token_encrypted: string | null;
  failure_code: string | null;
  failure_message: string | null;
  inquiry_count: Generated<number>;
  next_inquiry_at: NullableTimestamp;
  correlation_id: string | null;
  last_sent_at: Timestamp;
  source_fingerprint: string | null;
  reason: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface RefundsTable {
  id: string;
  merchant_id: string;
  payment_id: string;
  amount: Money;
  currency: string;
  status: string;
  reason: string | null;
  failure_code: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface IdempotencyKeysTable {
  id: Generated<string>;
  merchant_id: string;
  key: string;
  request_method: string;
  request_path: string;
  request_hash: string;
  recovery_point: string;
  locked_at: NullableTimestamp;
  lock_token: string | null;
  payment_id: string | null;
  refund_id: string | null;
  attempt_id: string | null;
  response_status: number | null;
  response_body: ColumnType<unknown, string | null | undefined, string | null>;
  /** The stored response, encrypted, when it holds a secret (then `response_body` is null). */
  response_sealed: string | null;
  correlation_id: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface RetentionMarksTable {
  name: string;
  pruned_before: ColumnType<Date, Date, Date>;
}

export interface OutboxTable {
  id: string;
  merchant_id: string;
  type: string;
  aggregate_id: string;
  data: Json<Record<string, unknown>>;
  correlation_id: string | null;
  published_at: NullableTimestamp;
  created_at: Timestamp;
  /** Generated from merchant_id by the database. */
  relay_partition: ColumnType<number, never, never>;
}

export interface AnomaliesTable {
  id: string;
  merchant_id: string;
  /** The type as first written (kept for rows from before `type`); new rows write the type here too. */
  kind: string;
  type: string;
  status: ColumnType<'open' | 'resolved', 'open' | 'resolved' | undefined, 'open' | 'resolved'>;
  gateway: string | null;
  payment_id: string | null;
  attempt_id: string | null;
  refund_id: string | null;
  order_id: string | null;
  partner_reference: string | null;
  /** Keel's record and the partner's: `{amount, currency, status, …}`, null for a side with no record. */
  expected: Json<Record<string, unknown> | null>;
  actual: Json<Record<string, unknown> | null>;
  resolution: Json<{ kind: 'auto' | 'manual'; action: string; note: string | null } | null>;
  /** What makes the same finding the same anomaly (per merchant and type), so it is opened once. */
  dedupe_key: string;
  detail: Json<Record<string, unknown>>;
  resolved_at: NullableTimestamp;
  created_at: Timestamp;
}

export interface IncidentsTable {
  id: string;
  title: string;
  severity: 'sev1' | 'sev2' | 'sev3';
  status: ColumnType<'investigating' | 'identified' | 'monitoring' | 'resolved', 'investigating' | 'identified' | 'monitoring' | 'resolved' | undefined, 'investigating' | 'identified' | 'monitoring' | 'resolved'>;
  source: 'manual' | 'alert' | 'chat';
  summary: string | null;
  /** The chat channel the incident is run from (Slack's `channel_id`). */
  channel: string | null;
  /** Alertmanager's `groupKey` of the alerts that opened it; one open incident per group. */
  group_key: string | null;
  imoc: string | null;
  srm: string | null;
  /** The partners and countries its alerts named (the outage record counts their payments). */
  gateways: ColumnType<string[], string[] | undefined, string[]>;
  countries: ColumnType<string[], string[] | undefined, string[]>;
  started_at: Timestamp;
  detected_at: Timestamp;
  mitigated_at: NullableTimestamp;
  resolved_at: NullableTimestamp;
  /** The outage record, written when the incident resolved (outage.ts). */
  outage: ColumnType<Record<string, unknown> | null, string | null | undefined, string | null>;
  created_at: Timestamp;
}

export interface IncidentOwnersTable {
  incident_id: string;
  service: string;
  person: string;
}

/** Each alert of an incident's group as last delivered: firing or resolved. */
export interface IncidentAlertsTable {
  incident_id: string;
  fingerprint: string;
  status: 'firing' | 'resolved';
  starts_at: Timestamp;
}

export interface IncidentTimelineTable {
  id: Generated<string>;
  incident_id: string;
  at: Timestamp;
  kind: 'alert' | 'role' | 'message' | 'status' | 'system';
  text: string;
  author: string | null;
  important: ColumnType<boolean, boolean | undefined, boolean>;
  /** What makes a delivery the same entry (an alert's fingerprint, status and start), so it is written once. */
  dedupe_key: string | null;
}

export interface PostmortemsTable {
  id: string;
  incident_id: string;
  status: ColumnType<'draft' | 'in_review' | 'published', 'draft' | 'in_review' | 'published' | undefined, 'draft' | 'in_review' | 'published'>;
  due_at: Timestamp;
  summary: string | null;
  what_happened: string | null;
  wrong_assumptions: Json<string[]>;
  /** The incident's timeline and outage record when the post-mortem was created. */
  timeline: Json<unknown[]>;
  outage: Json<Record<string, unknown>>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface ActionItemsTable {
  id: string;
  postmortem_id: string;
  text: string;
  owner: string;
  due_at: NullableTimestamp;
  status: ColumnType<'open' | 'done', 'open' | 'done' | undefined, 'open' | 'done'>;
  created_at: Timestamp;
}

/** A chat message for `KEEL_SLACK_WEBHOOK_URL`, sent (and retried) by the workers, never on a payment's path. */
export interface ChatNoticesTable {
  id: Generated<string>;
  text: string;
  /** What makes a notice the same one (a daily reminder: its subject and day), so it is queued once. */
  dedupe_key: string | null;
  attempts: ColumnType<number, number | undefined, number>;
  next_attempt_at: Timestamp;
  sent_at: NullableTimestamp;
  created_at: Timestamp;
}

/** Chat requests already acted on, by signature, so a replay within the allowed skew is refused. */
export interface ChatRequestsTable {
  signature: string;
  received_at: ColumnType<Date, Date | undefined, Date>;
}

export interface CustomersTable {
  id: string;
  merchant_id: string;
  customer_key: string;
  status: 'active' | 'locked' | 'deleted';
  pin_hash: string | null;
  pin_salt: string | null;
  pin_failures: ColumnType<number, number | undefined, number>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface PaymentMethodsTable {
  id: string;
  merchant_id: string;
  customer_id: string;
  type: 'card' | 'bank_account';
  gateway: string | null;
  token_encrypted: string | null;
  brand: string | null;
  last4: string;
  exp_month: number | null;
  exp_year: number | null;
  bank_code: string | null;
  account_number_encrypted: string | null;
  fingerprint: string;
  status: 'active' | 'detached';
  created_at: Timestamp;
  detached_at: NullableTimestamp;
}

export interface CheckoutSessionsTable {
  id: string;
  merchant_id: string;
  customer_id: string;
  amount: Money;
  currency: string;
  order_id: string;
  country: string;
  success_url: string;
  fail_url: string;
  order_name: string | null;
  status: 'open' | 'approved' | 'completed' | 'expired';
  payment_id: string | null;
  expires_at: Timestamp;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface InboxTable {
  consumer: string;
  event_id: string;
  processed_at: Timestamp;
}

export interface LeasesTable {
  name: string;
  holder: string;
  expires_at: Timestamp;
}

export interface ReconciliationRunsTable {
  id: string;
  gateway: string;
  /** The UTC day reconciled, as text (`to_char`) when read. */
  day: Day;
  merchant_id: string | null;
  status: 'running' | 'succeeded' | 'failed';
  rows_read: Generated<number>;
  matched: Generated<number>;
  anomalies_opened: Generated<number>;
  anomalies_resolved: Generated<number>;
  error: string | null;
  started_at: Timestamp;
  finished_at: NullableTimestamp;
}

/** A partner's report row staged for one reconciliation run, joined to the payment it names (null: none). */
export interface ReconciliationRowsTable {
  run_id: string;
  merchant_id: string;
  reference: string;
  partner_payment_id: string;
  kind: 'sale' | 'refund';
  order_id: string | null;
  currency: string;
  gross: Money;
  fee: Money;
  contract_fee: Money;
  payment_id: string | null;
}

/** One row: this deployment's identity (`storage/database.ts` `deploymentId`). */
export interface DeploymentTable {
  singleton: ColumnType<boolean, never, never>;
  id: ColumnType<string, never, never>;
  created_at: ColumnType<Date, never, never>;
}

export interface WebhookEndpointsTable {
  id: string;
  merchant_id: string;
  url: string;
  events: Json<string[]>;
  secret_encrypted: string;
  /** A disabled endpoint gets no new deliveries, and its pending ones wait until it is enabled again. */
  disabled: ColumnType<boolean, boolean | undefined, boolean>;
  /** Deleted: hidden from the API, gets nothing; its pending deliveries were failed when it was deleted. */
  deleted_at: NullableTimestamp;
  created_at: Timestamp;
}

export interface WebhookDeliveriesTable {
  id: string;
  merchant_id: string;
  endpoint_id: string;
  event_id: string;
  event_type: string;
  payload: string;
  status: 'pending' | 'succeeded' | 'failed';
  attempts: ColumnType<number, number | undefined, number>;
  next_attempt_at: NullableTimestamp;
  last_status_code: number | null;
  last_latency_ms: number | null;
  last_error: string | null;
  /** The holder of the delivery's lease while it is being sent. */
  lease_token: ColumnType<string | null, string | null | undefined, string | null>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface LedgerTransactionsTable {
  id: string;
  merchant_id: string;
  kind: 'capture' | 'refund' | 'capture_reversal' | 'settlement';
  payment_id: string | null;
  refund_id: string | null;
  external_reference: string | null;
  /**
   * The UTC day the transaction took effect at the partner: a capture's or refund's request was sent that day, a
   * settlement was paid out that day. Reconciliation compares by it.
   */
  effective_date: ColumnType<Date | string, string | undefined, string>;
  created_at: Timestamp;
}

export interface LedgerEntriesTable {
  id: Generated<string>;
  transaction_id: string;
  merchant_id: string;
  account: string;
  currency: string;
  amount: Money;
}

export interface ReportPaymentsDailyTable {
  merchant_id: string;
  day: Day;
  currency: string;
  country: string;
  gateway: string;
  shard: number;
  created: Counter;
  authorized: Counter;
  failed: Counter;
  not_sent: Counter;
  canceled: Counter;
  captured: Counter;
  amount_captured: Counter;
  refunds: Counter;
  amount_refunded: Counter;
}

export interface ReportPaymentFailuresTable {
  merchant_id: string;
  day: Day;
  currency: string;
  country: string;
  gateway: string;
  failure_code: string;
  shard: number;
  count: Counter;
}

export interface ProjectionsTable {
  name: string;
  rebuilt_at: Timestamp;
  events_replayed: Counter;
}

export interface KeelDatabase {
  report_payments_daily: ReportPaymentsDailyTable;
  report_payment_failures: ReportPaymentFailuresTable;
  projections: ProjectionsTable;
  ledger_transactions: LedgerTransactionsTable;
  ledger_entries: LedgerEntriesTable;
  webhook_endpoints: WebhookEndpointsTable;
  deployment: DeploymentTable;
  reconciliation_runs: ReconciliationRunsTable;
  reconciliation_rows: ReconciliationRowsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  leases: LeasesTable;
  inbox: InboxTable;
  checkout_sessions: CheckoutSessionsTable;
  customers: CustomersTable;
  payment_methods: PaymentMethodsTable;
  merchants: MerchantsTable;
  api_keys: ApiKeysTable;
  merchant_partners: MerchantPartnersTable;
  payments: PaymentsTable;
  payment_attempts: AttemptsTable;
  refunds: RefundsTable;
  idempotency_keys: IdempotencyKeysTable;
  retention_marks: RetentionMarksTable;
  outbox: OutboxTable;
  anomalies: AnomaliesTable;
  incidents: IncidentsTable;
  incident_owners: IncidentOwnersTable;
  incident_alerts: IncidentAlertsTable;
  incident_timeline: IncidentTimelineTable;
  postmortems: PostmortemsTable;
  action_items: ActionItemsTable;
  chat_notices: ChatNoticesTable;
  chat_requests: ChatRequestsTable;
}

export type PaymentRow = Selectable<PaymentsTable>;
export type NewPaymentRow = Insertable<PaymentsTable>;
export type PaymentUpdate = Updateable<PaymentsTable>;
export type AttemptRow = Selectable<AttemptsTable>;
export type RefundRow = Selectable<RefundsTable>;
export type IdempotencyKeyRow = Selectable<IdempotencyKeysTable>;
export type MerchantRow = Selectable<MerchantsTable>;

export type CustomerRow = Selectable<CustomersTable>;
export type PaymentMethodRow = Selectable<PaymentMethodsTable>;
export type CheckoutSessionRow = Selectable<CheckoutSessionsTable>;
export type WebhookDeliveryRow = Selectable<WebhookDeliveriesTable>;
export type WebhookEndpointRow = Selectable<WebhookEndpointsTable>;
