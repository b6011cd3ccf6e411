import { BlockList, isIP } from 'node:net';
import { lookup, promises as dnsPromises, type LookupAddress } from 'node:dns';

/**
 * Where a live merchant's webhooks may go: the public internet only. Loopback, private, shared, link-local
 * (with the cloud metadata address 169.254.169.254), multicast and reserved ranges are refused, for IPv4 and
 * IPv6 (and IPv4 written inside IPv6). A name is resolved and every address it has must be public; the check
 * runs when the endpoint is created and again on every connection Keel opens to deliver (the connection's own
 * DNS lookup goes through `guardedLookup`), so a name that later resolves inside (DNS rebinding) gets nothing.
 */
const forbidden = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  forbidden.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
  ['2001:db8::', 32],
  ['100::', 64],
] as const) {
  forbidden.addSubnet(network, prefix, 'ipv6');
}

/** The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible or NAT64 (64:ff9b::/96) IPv6 address. */
function embeddedIpv4(address: string): string | undefined {
  const lower = address.toLowerCase();
  const dotted = /^(?:::ffff:|::|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (dotted !== null) return dotted[1];
  const hex = /^(?:::ffff:|64:ff9b::)([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(lower);
  if (hex === null) return undefined;
  const high = parseInt(hex[1] ?? '0', 16);
  const low = parseInt(hex[2] ?? '0', 16);
  return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
}

export function isForbiddenAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return forbidden.check(address, 'ipv4');
  if (family !== 6) return true;
  const inner = embeddedIpv4(address);
  if (inner !== undefined) return forbidden.check(inner, 'ipv4');
  return forbidden.check(address, 'ipv6');
}

export class ForbiddenDestination extends Error {
  readonly code = 'destination_forbidden';
  constructor(host: string, address: string) {
    super(`${host} resolves to ${address}, which is not a public address`);
    this.name = 'ForbiddenDestination';
  }
}

/** The URL's host without IPv6 brackets. */
export function hostOf(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}

/** A literal address that is not public throws; a name passes here (its addresses are checked where it resolves). */
export function assertPublicLiteral(host: string): void {
  if (isIP(host) !== 0 && isForbiddenAddress(host)) throw new ForbiddenDestination(host, host);
}

/** Every address the host resolves to, each checked; throws ForbiddenDestination on the first that is not public. */
export async function assertPublicHost(host: string): Promise<void> {
  assertPublicLiteral(host);
  if (isIP(host) !== 0) return;
  const refused = firstForbidden(await dnsPromises.lookup(host, { all: true, verbatim: true }));
  if (refused !== undefined) throw new ForbiddenDestination(host, refused.address);
}

function firstForbidden(addresses: readonly LookupAddress[]): LookupAddress | undefined {
  return addresses.find(({ address }) => isForbiddenAddress(address));
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/** A `lookup` for sockets: resolves every address of the name and refuses the connection if any is not public. */
export function guardedLookup(hostname: string, options: { all?: boolean; family?: number }, callback: LookupCallback): void {
  lookup(hostname, { all: true, verbatim: true, ...(options.family === undefined ? {} : { family: options.family }) }, (error, addresses) => {
    if (error !== null) return callback(error, []);
    const refused = firstForbidden(addresses);
    if (refused !== undefined) return callback(new ForbiddenDestination(hostname, refused.address) as unknown as NodeJS.ErrnoException, []);
    if (options.all === true) return callback(null, addresses);
    const first = addresses[0];
    if (first === undefined) return callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), []);
    return callback(null, first.address, first.family);
  });
}
