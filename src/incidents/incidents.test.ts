// Proves incidents through the operator API and Slack's slash command: an incident opened by hand, its roles,
// messages and statuses with times in order, refusals once resolved; Alertmanager's receiver opening an
// incident per group, one timeline entry per delivery of an alert, monitoring once every alert resolved and back
// when one fires again, a new incident after the group's was resolved, a malformed body refused with nothing
// written; the outage record counting only the named partner and country's failed, unreachable and processing
// payments; the post-mortem due 7 days after, refused publication until complete, action items, overdue lists,
// reminders once a day, Markdown; chat commands signed as Slack signs them (the vectors computed here from
// Slack's documented algorithm), unsigned, stale, future, forged and replayed requests refused with nothing done;
// a breaker opening written on the open incident as a system entry; chat notices sent to the webhook, retried.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startTestKeel, testCard, uniqueKey, type TestKeel } from '../testing/harness.js';
import { publicToUuid } from '../storage/ids.js';

const signingSecret = '8f742231b10e8888abcd99yyyzzz85a5';
let keel: TestKeel;
let hook: Server;
const posted: string[] = [];
let hookStatus = 200;

before(async () => {
  hook = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      posted.push(body);
      response.statusCode = hookStatus;
      response.end('ok');
    });
  });
  await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
  keel = await startTestKeel({
    config: {
      slackSigningSecret: signingSecret,
      slackWebhookUrl: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`,
      breaker: { minimumCalls: 3, failureRatePercent: 50, windowMs: 10_000, errorTimeoutMs: 60_000, successThreshold: 2, halfOpenReadTimeoutMs: 500 },
    },
  });
});
after(async () => {
  await keel.close();
  await new Promise((resolve) => hook.close(resolve));
});

const admin = (method: 'GET' | 'POST', path: string, body?: unknown) =>
  keel.request(method, path, { ...(body === undefined ? {} : { body }), secretKey: null, idempotencyKey: null, headers: { authorization: `Bearer ${keel.keel.services.adminToken}` } });

/** Slack's documented signing: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}` under the signing secret. */
function slack(text: string, options: { channel?: string; user?: string; at?: number; secret?: string; signature?: string | null } = {}) {
  const body = new URLSearchParams({ token: 'x', team_id: 'T1', channel_id: options.channel ?? 'C-OPS', user_id: options.user ?? 'U0001', user_name: 'dana', command: '/incident', text }).toString();
  const timestamp = String(Math.floor((options.at ?? Date.now()) / 1000));
  const signature = `v0=${createHmac('sha256', options.secret ?? signingSecret).update(`v0:${timestamp}:${body}`).digest('hex')}`;
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', 'x-slack-request-timestamp': timestamp };
  if (options.signature !== null) headers['x-slack-signature'] = options.signature ?? signature;
  return { body, headers, send: () => keel.request('POST', '/chatops/slack', { rawBody: body, secretKey: null, idempotencyKey: null, headers }) };
}

function alertBody(groupKey: string, alerts: { status: 'firing' | 'resolved'; fingerprint: string; startsAt?: string; labels?: Record<string, string> }[]) {
  const labels = { alertname: 'KeelBreakerOpen', gateway: 'toss', country: 'JP', severity: 'critical' };
  return {
    version: '4',
    groupKey,
    status: alerts.some((alert) => alert.status === 'firing') ? 'firing' : 'resolved',
    receiver: 'keel',
    groupLabels: { alertname: 'KeelBreakerOpen', gateway: 'toss', country: 'JP' },
    commonLabels: labels,
    commonAnnotations: { summary: 'toss circuit breaker open for JP' },
    externalURL: 'http://127.0.0.1:9093',
    alerts: alerts.map((alert) => ({
      status: alert.status,
      labels: { ...labels, ...alert.labels },
      annotations: { summary: 'toss circuit breaker open for JP' },
      startsAt: alert.startsAt ?? '2026-12-02T10:00:00Z',
      endsAt: alert.status === 'resolved' ? '2026-12-02T10:05:00Z' : '0001-01-01T00:00:00Z',
      generatorURL: 'http://127.0.0.1:9090/graph',
      fingerprint: alert.fingerprint,
    })),
  };
}

describe('incidents run by hand', () => {
  test('an incident opened by hand takes roles and messages, moves in order, and refuses changes once resolved', async () => {
    const opened = await admin('POST', '/admin/incidents', { title: 'Checkout slow in Korea', severity: 'sev2', summary: 'p99 above 3 s' });
    assert.equal(opened.status, 201, JSON.stringify(opened.body));
    assert.match(opened.body.id, /^inc_/);
    assert.deepEqual([opened.body.object, opened.body.status, opened.body.source, opened.body.severity, opened.body.roles], ['incident', 'investigating', 'manual', 'sev2', { imoc: null, srm: null, owners: [] }]);
    const id = opened.body.id as string;
    assert.equal((await admin('POST', `/admin/incidents/${id}/roles`, { role: 'imoc', person: 'dana' })).body.roles.imoc, 'dana');
    assert.equal((await admin('POST', `/admin/incidents/${id}/roles`, { role: 'srm', person: 'lee' })).body.roles.srm, 'lee');
    const owned = await admin('POST', `/admin/incidents/${id}/roles`, { role: 'owner', person: 'kim', service: 'payments' });
    assert.deepEqual(owned.body.roles.owners, [{ service: 'payments', person: 'kim' }]);
    assert.deepEqual([(await admin('POST', `/admin/incidents/${id}/roles`, { role: 'owner', person: 'kim' })).body.error?.param], ['service']);
    assert.equal((await admin('POST', `/admin/incidents/${id}/timeline`, { text: 'Toss confirms latency in KR', author: 'lee', important: true })).status, 201);
    for (const status of ['identified', 'monitoring']) assert.equal((await admin('POST', `/admin/incidents/${id}/status`, { status })).body.status, status);
    const monitoring = await admin('GET', `/admin/incidents/${id}`);
    assert.ok(monitoring.body.mitigated_at !== null && monitoring.body.detected_at <= monitoring.body.mitigated_at);
    assert.equal((await admin('GET', `/admin/incidents/${id}/outage`)).status, 404, 'no outage record before it resolves');
    const resolved = await admin('POST', `/admin/incidents/${id}/status`, { status: 'resolved', note: 'latency back to normal' });
    assert.equal(resolved.body.status, 'resolved');
    const times = ['started_at', 'detected_at', 'mitigated_at', 'resolved_at'].map((field) => Date.parse(resolved.body[field]));
    assert.deepEqual([...times].sort((a, b) => a - b), times, 'started ≤ detected ≤ mitigated ≤ resolved');
    for (const [path, body] of [[`/admin/incidents/${id}/status`, { status: 'investigating' }], [`/admin/incidents/${id}/roles`, { role: 'imoc', person: 'x' }], [`/admin/incidents/${id}/timeline`, { text: 'late', author: 'x' }]] as const) {
      const refused = await admin('POST', path, body);
      assert.deepEqual([refused.status, refused.body.error?.code], [409, 'incident_resolved']);
    }
    const timeline = await admin('GET', `/admin/incidents/${id}/timeline`);
    assert.deepEqual(timeline.body.data.map((entry: { kind: string }) => entry.kind), ['status', 'role', 'role', 'role', 'message', 'status', 'status', 'status']);
    assert.equal(timeline.body.data.filter((entry: { important: boolean }) => entry.important).length, 1);
    const outage = await admin('GET', `/admin/incidents/${id}/outage`);
    assert.deepEqual([outage.body.people.sort(), outage.body.important_messages.map((message: { text: string }) => message.text)], [['dana', 'kim', 'lee'], ['Toss confirms latency in KR']]);
    assert.equal((await admin('GET', '/admin/incidents/inc_nope')).status, 404);
    assert.equal((await admin('POST', '/admin/incidents', { title: 'x', severity: 'sev9' })).status, 400);
  });
});

describe('alerts from Alertmanager', () => {
  test('a firing group opens one incident; redeliveries are one entry; all resolved is monitoring; firing again is investigating', async () => {
    const group = `{}:{alertname="KeelBreakerOpen", gateway="toss", country="JP"}/${uniqueKey('g')}`;
    const first = await admin('POST', '/admin/alerts/alertmanager', alertBody(group, [{ status: 'firing', fingerprint: 'f1' }]));
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.deepEqual([first.body.opened, first.body.entries, first.body.incident.source, first.body.incident.severity], [true, 1, 'alert', 'sev1']);
    assert.equal(first.body.incident.title, 'KeelBreakerOpen: country=JP, gateway=toss');
    assert.deepEqual([first.body.incident.gateways, first.body.incident.countries], [['toss'], ['JP']]);
    assert.equal(first.body.incident.started_at, '2026-12-02T10:00:00.000Z', 'the alert started it');
    const id = first.body.incident.id as string;
    const again = await admin('POST', '/admin/alerts/alertmanager', alertBody(group, [{ status: 'firing', fingerprint: 'f1' }]));
    assert.deepEqual([again.body.opened, again.body.entries, again.body.incident.id], [false, 0, id], 'the same alert delivered twice is one entry');
    const second = await admin('POST', '/admin/alerts/alertmanager', alertBody(group, [{ status: 'firing', fingerprint: 'f1' }, { status: 'firing', fingerprint: 'f2', labels: { country: 'KR' } }]));
    assert.deepEqual([second.body.entries, second.body.incident.countries], [1, ['JP', 'KR']]);
    const partly = await admin('POST', '/admin/alerts/alertmanager', alertBody(group, [{ status: 'resolved', fingerprint: 'f1' }, { status: 'firing', fingerprint: 'f2', labels: { country: 'KR' } }]));
    assert.equal(partly.body.incident.status, 'investigating', 'one alert still fires');
    const cleared = await admin('POST', '/admin/alerts/alertmanager', alertBody(group, [{ status: 'resolved', fingerprint: 'f1' }, { status: 'resolved', fingerprint: 'f2', labels: { country: 'KR' } }]));
    assert.equal(cleared.body.incident.status, 'monitoring');
    const refired = await admin('POST', '/admin/alerts/alertmanager', alertBody(group, [{ status: 'firing', fingerprint: 'f1', startsAt: '2026-12-02T11:00:00Z' }]));
    assert.equal(refired.body.incident.status, 'investigating');
    const timeline = (await admin('GET', `/admin/incidents/${id}/timeline`)).body.data as { kind: string; text: string }[];
    assert.equal(timeline.filter((entry) => entry.kind === 'alert').length, 5);
    assert.ok(timeline.some((entry) => entry.kind === 'status' && entry.text === 'investigating → monitoring: every alert of the group has resolved'));

    assert.equal((await admin('POST', `/admin/incidents/${id}/status`, { status: 'resolved' })).body.status, 'resolved');
    const after = await admin('POST', '/admin/alerts/alertmanager', alertBody(group, [{ status: 'firing', fingerprint: 'f1', startsAt: '2026-12-02T12:00:00Z' }]));
    assert.equal(after.body.opened, true, 'a group firing after its incident resolved opens a new one');
    assert.notEqual(after.body.incident.id, id);
    const stale = await admin('POST', '/admin/alerts/alertmanager', alertBody(uniqueKey('quiet'), [{ status: 'resolved', fingerprint: 'f9' }]));
    assert.deepEqual([stale.status, stale.body.incident], [200, null], 'resolved alerts of no incident open nothing');
  });

  test('a malformed Alertmanager body is 400 and writes nothing; the receiver needs the admin token', async () => {
    const before = await keel.countAllRows();
    const group = uniqueKey('bad');
    for (const body of [{}, { ...alertBody(group, [{ status: 'firing', fingerprint: 'f' }]), version: '3' }, { ...alertBody(group, [{ status: 'firing', fingerprint: 'f' }]), alerts: [] }, alertBody(group, [{ status: 'firing', fingerprint: 'f', startsAt: 'yesterday' }]), { ...alertBody(group, []), alerts: [{ status: 'burning' }] }]) {
      const refused = await admin('POST', '/admin/alerts/alertmanager', body);
      assert.equal(refused.status, 400, JSON.stringify(refused.body));
    }
    const unauthenticated = await keel.request('POST', '/admin/alerts/alertmanager', { body: alertBody(group, [{ status: 'firing', fingerprint: 'f' }]), secretKey: null, idempotencyKey: null });
    assert.equal(unauthenticated.status, 401);
    assert.deepEqual(await keel.countAllRows(), before);
  });
});

describe('the outage record and the post-mortem', () => {
  test('impact counts the named partner and country only; the post-mortem is due in 7 days and publishes only when complete', async () => {
    const japan = await keel.createMerchant({ name: 'Osaka', country: 'JP' });
    const korea = await keel.createMerchant({ name: 'Busan', country: 'KR' });
    const group = uniqueKey('outage');
    const opened = await admin('POST', '/admin/alerts/alertmanager', alertBody(group, [{ status: 'firing', fingerprint: 'o1', startsAt: new Date(Date.now() - 1_000).toISOString() }]));
    const id = opened.body.incident.id as string;
    const pay = (secretKey: string, card?: string) => keel.request('POST', '/v1/payments', { secretKey, body: { amount: 5000, currency: 'KRW', order_id: uniqueKey('o'), payment_method: testCard(card), confirm: true } });
    // Toss is down for Japan: its payments there fail (errors, then refused by the open breaker).
    await fetch(`${keel.keel.gatewayUrl}/__sim/faults`, { method: 'POST', body: JSON.stringify({ country: 'JP', mode: 'outage', duration_s: 60 }) });
    try {
      // Each ends unknown (202, processing: the partner answered 503) or unreachable (503, refused by the breaker).
      for (let index = 0; index < 5; index += 1) assert.ok([202, 503].includes((await pay(japan.secret_key)).status));
    } finally {
      await fetch(`${keel.keel.gatewayUrl}/__sim/faults`, { method: 'DELETE' });
    }
    // Neither Korea's payments, failed or declined, nor Japan's declines are the outage.
    assert.equal((await pay(korea.secret_key)).status, 200);
    assert.equal((await pay(korea.secret_key, '4000000000000002')).status, 402);
    const timeline = (await admin('GET', `/admin/incidents/${id}/timeline`)).body.data as { kind: string; text: string }[];
    assert.ok(timeline.some((entry) => entry.kind === 'system' && entry.text === 'circuit breaker toss/JP opened'), JSON.stringify(timeline));
    await admin('POST', `/admin/incidents/${id}/timeline`, { text: 'failing over is not possible: Osaka has one partner', author: 'dana', important: true });
    await admin('POST', '/admin/alerts/alertmanager', alertBody(group, [{ status: 'resolved', fingerprint: 'o1', startsAt: opened.body.incident.started_at }]));
    const resolved = await admin('POST', `/admin/incidents/${id}/status`, { status: 'resolved', author: 'dana' });
    assert.equal(resolved.body.status, 'resolved');

    const outage = await admin('GET', `/admin/incidents/${id}/outage`);
    assert.equal(outage.status, 200, JSON.stringify(outage.body));
    assert.deepEqual([outage.body.gateways, outage.body.countries], [['toss'], ['JP']]);
    const impact = outage.body.impact;
    // Three calls failed at the partner (unknown: still processing), then the breaker opened and refused two.
    assert.deepEqual([impact.payments_processing, impact.payments_unreachable, impact.payments_failed], [3, 2, 0], JSON.stringify(impact));
    assert.deepEqual(impact.amount_at_risk, [{ amount: 25000, currency: 'KRW' }]);
    assert.ok(outage.body.duration_s >= 0 && outage.body.time_to_detect_s >= 0 && outage.body.time_to_mitigate_s >= 0);
    assert.deepEqual(outage.body.important_messages.map((message: { text: string }) => message.text), ['failing over is not possible: Osaka has one partner']);

    const listed = await admin('GET', '/admin/postmortems?status=draft&limit=100');
    const postmortem = listed.body.data.find((candidate: { incident: string }) => candidate.incident === id);
    assert.ok(postmortem !== undefined);
    assert.match(postmortem.id, /^pmr_/);
    assert.equal(Math.round((Date.parse(postmortem.due_at) - Date.parse(resolved.body.resolved_at)) / 86_400_000), 7);
    assert.deepEqual([postmortem.what_happened, postmortem.summary, postmortem.outage.impact.amount_at_risk], [null, 'toss circuit breaker open for JP', [{ amount: 25000, currency: 'KRW' }]]);
    assert.ok(postmortem.timeline.length >= 4);

    const early = await admin('POST', `/admin/postmortems/${postmortem.id}`, { what_happened: 'Toss lost its Japanese acquirer for six minutes.', status: 'published' });
    assert.deepEqual([early.status, early.body.error?.code], [409, 'postmortem_incomplete']);
    assert.equal((await admin('GET', `/admin/postmortems/${postmortem.id}`)).body.what_happened, null, 'a refused update changes nothing');
    const item = await admin('POST', `/admin/postmortems/${postmortem.id}/action_items`, { text: 'Give Osaka a second partner', owner: 'kim', due_at: '2026-12-20' });
    assert.equal(item.status, 201, JSON.stringify(item.body));
    assert.match(item.body.id, /^act_/);
    assert.equal((await admin('POST', `/admin/postmortems/${postmortem.id}/action_items`, { text: 'x', owner: 'y', due_at: 'soon' })).status, 400);
    const written = await admin('POST', `/admin/postmortems/${postmortem.id}`, { what_happened: 'Toss lost its Japanese acquirer for six minutes.', wrong_assumptions: ['Every shop has a second partner'] });
    assert.equal(written.body.status, 'draft');
    const published = await admin('POST', `/admin/postmortems/${postmortem.id}`, { status: 'published' });
    assert.equal(published.body.status, 'published', JSON.stringify(published.body));
    assert.equal((await admin('POST', `/admin/action_items/${item.body.id}`, { status: 'done' })).body.status, 'done');
    const markdown = await admin('GET', `/admin/postmortems/${postmortem.id}/markdown`);
    assert.match(String(markdown.headers['content-type']), /text\/markdown/);
    assert.match(markdown.body as string, /^# Post-mortem: KeelBreakerOpen: country=JP, gateway=toss$/m);
    assert.match(markdown.body as string, /- \[x\] Give Osaka a second partner — kim, due 2026-12-20/);
    assert.match(markdown.body as string, /- Every shop has a second partner/);
  });

  test('overdue post-mortems and action items are listed and reminded in chat once a day', async () => {
    const opened = await admin('POST', '/admin/incidents', { title: 'Webhooks late', severity: 'sev3' });
    await admin('POST', `/admin/incidents/${opened.body.id}/status`, { status: 'resolved' });
    const postmortem = (await admin('GET', '/admin/postmortems?limit=100')).body.data.find((candidate: { incident: string }) => candidate.incident === opened.body.id);
    const item = await admin('POST', `/admin/postmortems/${postmortem.id}/action_items`, { text: 'Alert on webhook lag', owner: 'lee', due_at: '2026-01-01' });
    assert.equal(item.body.overdue, true);
    // Not yet due itself, but its action item is: overdue.
    const overdue = (await admin('GET', '/admin/postmortems?overdue=true&limit=100')).body.data.map((row: { id: string }) => row.id);
    assert.ok(overdue.includes(postmortem.id));
    const postmortemId = publicToUuid('postmortem', postmortem.id) ?? '';
    await keel.keel.database.db.updateTable('postmortems').set({ due_at: new Date(Date.now() - 86_400_000) }).where('id', '=', postmortemId).execute();
    const first = await keel.keel.jobs.reminders();
    assert.ok(first >= 2, `reminders queued: ${first}`);
    assert.equal(await keel.keel.jobs.reminders(), 0, 'once a day');
    posted.length = 0;
    await keel.keel.jobs.notices();
    assert.ok(posted.some((body) => body.includes(postmortem.id) && body.includes('not published')), posted.join('\n'));
    assert.ok(posted.some((body) => body.includes(item.body.id) && body.includes('Alert on webhook lag')));
    const tomorrow = new Date(Date.now() + 86_400_000);
    assert.ok((await keel.keel.jobs.reminders(tomorrow)) >= 2, 'again the next day');
  });
});

describe('chat-ops', () => {
  test('signed slash commands open and run an incident from a channel', async () => {
    const channel = uniqueKey('C');
    const opened = await slack('open sev2 Stripe refunds failing', { channel }).send();
    assert.equal(opened.status, 200, JSON.stringify(opened.body));
    assert.equal(opened.body.response_type, 'in_channel');
    const id = /(inc_[0-9A-Z]+)/.exec(opened.body.text)?.[1] ?? '';
    assert.match(id, /^inc_/);
    for (const text of ['imoc <@U0001>', 'srm <@U0002>', 'owner refunds <@U0003>', 'note checking Stripe status', 'important Stripe confirms an incident on refunds', 'status identified']) {
      const answer = await slack(text, { channel }).send();
      assert.deepEqual([answer.status, answer.body.response_type], [200, 'in_channel'], `${text}: ${JSON.stringify(answer.body)}`);
    }
    const incident = await admin('GET', `/admin/incidents/${id}`);
    assert.deepEqual([incident.body.source, incident.body.channel, incident.body.status, incident.body.roles], ['chat', channel, 'identified', { imoc: '<@U0001>', srm: '<@U0002>', owners: [{ service: 'refunds', person: '<@U0003>' }] }]);
    const listed = await slack('list', { channel }).send();
    assert.match(listed.body.text, new RegExp(id));
    // Another channel names the incident explicitly.
    assert.equal((await slack(`${id} status monitoring`, { channel: 'C-ELSEWHERE' }).send()).body.response_type, 'in_channel');
    const closed = await slack('close', { channel }).send();
    assert.match(closed.body.text, /resolved\. Its post-mortem is due in 7 days/);
    const late = await slack('note too late', { channel }).send();
    assert.deepEqual([late.status, late.body.response_type], [200, 'ephemeral'], 'no open incident in the channel any more');
    const timeline = (await admin('GET', `/admin/incidents/${id}/timeline`)).body.data as { kind: string; author: string; important: boolean }[];
    assert.deepEqual(timeline.filter((entry) => entry.important).length, 1);
    assert.ok(timeline.every((entry) => entry.author === '<@U0001>'), 'every entry is the commanding user');
    await keel.keel.jobs.notices();
    assert.ok(posted.some((body) => body.includes(id) && body.includes('opened')));
  });

  test('an unknown command gets the help; a command with no incident is explained; bad arguments get their usage', async () => {
    const channel = uniqueKey('C');
    const unknown = await slack('dance', { channel }).send();
    assert.deepEqual([unknown.status, unknown.body.response_type], [200, 'ephemeral']);
    assert.match(unknown.body.text, /Unknown command `dance`[\s\S]*open <sev1\|sev2\|sev3> <title>/);
    assert.match((await slack('', { channel }).send()).body.text, /Keel incidents/);
    assert.match((await slack('imoc <@U1>', { channel }).send()).body.text, /No open incident in this channel/);
    assert.match((await slack('open sev7 nope', { channel }).send()).body.text, /Usage: `open/);
    await slack('open sev3 a test', { channel }).send();
    assert.match((await slack('imoc dana', { channel }).send()).body.text, /Usage: `imoc <@user>`/);
    assert.match((await slack('status done', { channel }).send()).body.text, /Usage: `status/);
    assert.match((await slack('inc_0000000000000000000000000 note x', { channel }).send()).body.text, /No such incident/);
  });

  test('unsigned, forged, stale, future and replayed requests are 401 and do nothing', async () => {
    const channel = uniqueKey('C');
    const before = (await admin('GET', '/admin/incidents?limit=100')).body.data.length;
    const refusals = [
      slack('open sev1 unsigned', { channel, signature: null }),
      slack('open sev1 forged', { channel, secret: 'not-the-secret' }),
      // A minute past the 300 s window either way: the requests are signed here and sent one after another, and
      // a timestamp is whole seconds, so a margin of one second would let a slow run slip back inside the window.
      slack('open sev1 stale', { channel, at: Date.now() - 360_000 }),
      slack('open sev1 future', { channel, at: Date.now() + 360_000 }),
      slack('open sev1 tampered', { channel, signature: `v0=${'0'.repeat(64)}` }),
    ];
    for (const request of refusals) {
      const refused = await request.send();
      assert.deepEqual([refused.status, refused.body.error?.code], [401, 'signature_invalid'], JSON.stringify(refused.body));
    }
    const once = slack('open sev3 replayed', { channel });
    assert.equal((await once.send()).status, 200);
    const replay = await once.send();
    assert.deepEqual([replay.status, replay.body.error?.code], [401, 'signature_invalid']);
    assert.equal((await admin('GET', '/admin/incidents?limit=100')).body.data.length, before + 1, 'only the signed request opened one');
  });
});

describe('chat notices', () => {
  test('a notice the webhook refuses is retried later, and sent once it accepts', async () => {
    posted.length = 0;
    hookStatus = 500;
    const opened = await admin('POST', '/admin/incidents', { title: 'Notice retried', severity: 'sev3' });
    assert.equal(await keel.keel.jobs.notices(), 0);
    assert.ok(posted.some((body) => body.includes(opened.body.id)), 'it was tried');
    hookStatus = 200;
    assert.equal(await keel.keel.jobs.notices(), 0, 'not before its retry time');
    await keel.keel.database.db.updateTable('chat_notices').set({ next_attempt_at: new Date(Date.now() - 1_000) }).where('sent_at', 'is', null).execute();
    assert.ok((await keel.keel.jobs.notices()) >= 1);
    assert.equal(posted.filter((body) => body.includes(opened.body.id)).length, 2);
  });
});

describe('system entries', () => {
  test("shedding starting (once per quiet minute) and an anomaly opening are written on the open incidents they concern", async () => {
    const everywhere = await admin('POST', '/admin/incidents', { title: 'Keel slow', severity: 'sev2' });
    const group = uniqueKey('stripe');
    const stripeOnly = await admin('POST', '/admin/alerts/alertmanager', alertBody(group, [{ status: 'firing', fingerprint: 's1', labels: { gateway: 'stripe', country: 'US' } }]));
    const { signals } = keel.keel.services.deps.metrics;
    signals.signal('shed', { reason: 'concurrency_limit' });
    signals.signal('shed', { reason: 'concurrency_limit' });
    signals.signal('anomaly', { type: 'DuplicateCharge', gateway: 'toss' });
    const systemOf = async (id: string) => ((await admin('GET', `/admin/incidents/${id}/timeline`)).body.data as { kind: string; text: string }[]).filter((entry) => entry.kind === 'system').map((entry) => entry.text);
    // The entries are written after the signal, off its path: wait for them to land.
    for (let tries = 0; (await systemOf(everywhere.body.id)).length < 2 && tries < 100; tries += 1) await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual((await systemOf(everywhere.body.id)).sort(), ['anomaly opened: DuplicateCharge at toss', 'load shedding started (concurrency_limit)']);
    assert.deepEqual(await systemOf(stripeOnly.body.incident.id), ['load shedding started (concurrency_limit)'], "a Toss anomaly is not the Stripe incident's");
  });
});
