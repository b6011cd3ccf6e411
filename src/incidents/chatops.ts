import { createHmac, timingSafeEqual } from 'node:crypto';
import { KeelError } from '../errors.js';
import { uuidToPublic } from '../storage/ids.js';
import {
  addMessage,
  findIncident,
  incidentOfChannel,
  incidentStatuses,
  listIncidents,
  openIncident,
  setRole,
  setStatus,
  severities,
  type IncidentRow,
  type IncidentsDeps,
  type IncidentStatus,
  type Severity,
} from './incidents.js';

/**
 * Chat-ops in Slack's slash-command wire format. A request is verified as Slack documents it: the
 * `X-Slack-Signature` is `v0=` + HMAC-SHA256 (signing secret) of `v0:{X-Slack-Request-Timestamp}:{raw body}`,
 * compared in constant time; a timestamp more than 300 s from now, either way, is stale; a signature already
 * seen is a replay. Each is refused (401) before anything is done.
 */
export const slackSkewMaxS = 300;

export function slackSignature(secret: string, timestamp: string, rawBody: string): string {
  return `v0=${createHmac('sha256', secret).update(`v0:${timestamp}:${rawBody}`).digest('hex')}`;
}

export function verifySlackRequest(secret: string | undefined, headers: Record<string, string | string[] | undefined>, rawBody: string, now = Date.now()): string {
  const signature = headers['x-slack-signature'];
  const timestamp = headers['x-slack-request-timestamp'];
  const refuse = (why: string) => new KeelError('signature_invalid', why);
  if (secret === undefined) throw refuse('Chat-ops is not configured (KEEL_SLACK_SIGNING_SECRET).');
  if (typeof signature !== 'string' || typeof timestamp !== 'string' || !/^\d{1,12}$/.test(timestamp)) throw refuse('The request is not signed.');
  if (Math.abs(now / 1000 - Number(timestamp)) > slackSkewMaxS) throw refuse(`The request's timestamp is more than ${slackSkewMaxS} s from now.`);
  const expected = Buffer.from(slackSignature(secret, timestamp, rawBody));
  const given = Buffer.from(signature);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw refuse('The request\'s signature does not match.');
  return signature;
}

/**
 * Remembers a verified signature for twice the allowed skew; resolves to false when it was already seen (a
 * replay of a request Keel acted on). Older ones are forgotten as new ones arrive.
 */
export async function firstSighting(db: IncidentsDeps['db'], signature: string): Promise<boolean> {
  await db.deleteFrom('chat_requests').where('received_at', '<', new Date(Date.now() - 2 * slackSkewMaxS * 1000)).execute();
  const fresh = await db.insertInto('chat_requests').values({ signature }).onConflict((conflict) => conflict.column('signature').doNothing()).returning('signature').executeTakeFirst();
  return fresh !== undefined;
}

export interface SlashCommand {
  readonly text: string;
  readonly channelId: string;
  readonly user: string;
}

export interface SlackAnswer {
  readonly response_type: 'in_channel' | 'ephemeral';
  readonly text: string;
}

export const chatHelp = [
  'Keel incidents — `/incident <command>`:',
  '• `open <sev1|sev2|sev3> <title>` — open an incident run from this channel',
  '• `imoc <@user>` · `srm <@user>` · `owner <service> <@user>` — set a role',
  '• `note <text>` · `important <text>` — add a message to the timeline (important ones go into the outage record)',
  '• `status <investigating|identified|monitoring|resolved>` · `close` — move the status (`close` resolves)',
  '• `list` — open incidents · `help` — this text',
  'Commands act on the incident opened in this channel, or on the `inc_…` given as the first word.',
].join('\n');

const ephemeral = (text: string): SlackAnswer => ({ response_type: 'ephemeral', text });
const inChannel = (text: string): SlackAnswer => ({ response_type: 'in_channel', text });
const person = (word: string | undefined) => (word !== undefined && /^<@[A-Z0-9]+(\|[^>]{1,80})?>$/.test(word) ? word : undefined);

/** Runs one slash command; a command that cannot be done answers with an ephemeral explanation. */
export async function runSlashCommand(deps: IncidentsDeps, command: SlashCommand): Promise<SlackAnswer> {
  const words = command.text.trim().split(/\s+/).filter((word) => word !== '');
  let target: IncidentRow | undefined;
  const named = words[0];
  if (named?.startsWith('inc_') === true) {
    words.shift();
    try {
      target = await findIncident(deps.db, named);
    } catch {
      return ephemeral(`No such incident: ${named}.`);
    }
  }
  const [verb = 'help', ...rest] = words;
  const argument = rest.join(' ');
  const author = `<@${command.user}>`;
  if (verb === 'help') return ephemeral(chatHelp);
  if (verb === 'list') {
    const open = await listIncidents(deps.db, { status: 'open' }, { limit: 20, startingAfter: undefined });
    if (open.length === 0) return ephemeral('No open incidents.');
    return ephemeral(open.slice(0, 20).map((row) => `• ${uuidToPublic('incident', row.id)} ${row.severity} ${row.status}: ${row.title}`).join('\n'));
  }
  if (verb === 'open') {
    const [severity, ...title] = rest;
    if (!severities.includes(severity as Severity) || title.length === 0) return ephemeral('Usage: `open <sev1|sev2|sev3> <title>`.');
    const row = await deps.db.transaction().execute((trx) => openIncident(deps, trx, { title: title.join(' '), severity: severity as Severity, source: 'chat', channel: command.channelId, author }));
    return inChannel(`${uuidToPublic('incident', row.id)} opened (${row.severity}): ${row.title}. Set the IMOC with \`imoc <@user>\`.`);
  }
  const known = ['imoc', 'srm', 'owner', 'note', 'important', 'status', 'close'];
  if (!known.includes(verb)) return ephemeral(`Unknown command \`${verb.slice(0, 40)}\`.\n${chatHelp}`);
  const incident = target ?? (await incidentOfChannel(deps.db, command.channelId));
  if (incident === undefined) return ephemeral('No open incident in this channel: `open <sev> <title>` opens one, or name it (`inc_… <command>`).');
  const name = uuidToPublic('incident', incident.id);
  try {
    switch (verb) {
      case 'imoc':
      case 'srm': {
        const who = person(rest[0]);
        if (who === undefined || rest.length !== 1) return ephemeral(`Usage: \`${verb} <@user>\`.`);
        await setRole(deps, incident.id, { role: verb, person: who }, author);
        return inChannel(`${name}: ${who} is ${verb.toUpperCase()}.`);
      }
      case 'owner': {
        const [service, user] = rest;
        const who = person(user);
        if (service === undefined || !/^[a-z0-9][a-z0-9_.-]{0,63}$/i.test(service) || who === undefined || rest.length !== 2) return ephemeral('Usage: `owner <service> <@user>`.');
        await setRole(deps, incident.id, { role: 'owner', service, person: who }, author);
        return inChannel(`${name}: ${who} owns ${service}.`);
      }
      case 'note':
      case 'important': {
        if (argument === '') return ephemeral(`Usage: \`${verb} <text>\`.`);
        await addMessage(deps, incident.id, { text: argument.slice(0, 4000), author, important: verb === 'important' });
        return inChannel(`${name}: ${verb === 'important' ? 'important message' : 'note'} added.`);
      }
      case 'status': {
        if (!incidentStatuses.includes(argument as IncidentStatus)) return ephemeral('Usage: `status <investigating|identified|monitoring|resolved>`.');
        const moved = await setStatus(deps, incident.id, argument as IncidentStatus, null, author);
        return inChannel(`${name} is ${moved.status}.`);
      }
      default: {
        await setStatus(deps, incident.id, 'resolved', rest.length === 0 ? null : argument, author);
        return inChannel(`${name} resolved. Its post-mortem is due in ${deps.postmortemDueDays} days.`);
      }
    }
  } catch (error) {
    if (error instanceof KeelError && error.code === 'incident_resolved') return ephemeral(`${name} is resolved; it no longer changes.`);
    throw error;
  }
}
