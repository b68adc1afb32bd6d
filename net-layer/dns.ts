// The jobs' DNS (their UDP 53 is redirected to the init, which passes each
// query here). A name that a route sends to another host gets a synthetic
// address from 100.64.0.0/10, the same on every host (the map is in etcd:
// /pj/dns/<address> = name), which the proxy maps back to the name and
// connects to on that host, resolving it there (as sshuttle --dns does). Any
// other name is resolved here. Only A questions get addresses; a malformed
// packet gets no answer, and nothing else happens.
import { createHash } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import type { Etcd3 } from 'etcd3';

const PREFIX = '/pj/dns/';
const SYNTHETIC_BASE = (100 << 24) | (64 << 16); // 100.64.0.0/10
const SYNTHETIC_SIZE = 1 << 22;
const TTL_S = 5;
export const TYPE_A = 1;
const CLASS_IN = 1;

export interface DnsQuestion { id: number; name: string; type: number; class: number; end: number; flags: number }

/** The first question of a query, or undefined for anything malformed. */
export function parseQuery(q: Buffer): DnsQuestion | undefined {
  if (q.length < 12 || (q.readUInt16BE(2) & 0x8000) !== 0 || q.readUInt16BE(4) < 1) return undefined;
  const labels: string[] = [];
  let i = 12;
  for (;;) {
    if (i >= q.length) return undefined;
    const len = q[i];
    if (len === 0) { i++; break; }
    if (len > 63 || i + 1 + len > q.length) return undefined; // compression has no place in a question
    labels.push(q.toString('latin1', i + 1, i + 1 + len));
    i += 1 + len;
    if (labels.length > 127) return undefined;
  }
  if (i + 4 > q.length || labels.length === 0) return undefined;
  return { id: q.readUInt16BE(0), flags: q.readUInt16BE(2), name: labels.join('.').toLowerCase(), type: q.readUInt16BE(i), class: q.readUInt16BE(i + 2), end: i + 4 };
}

/** An answer to `q` (the original query bytes) with these IPv4 addresses; rcode 3 (NXDOMAIN) when `addrs` is undefined. */
/** `rcode`: 0 with addresses, 3 (NXDOMAIN) without, or 2 (SERVFAIL: the name could not be looked up now). */
export function answer(query: Buffer, q: DnsQuestion, addrs: string[] | undefined, rcode = addrs ? 0 : 3): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(q.id, 0);
  header.writeUInt16BE(0x8180 | (q.flags & 0x0100) | rcode, 2); // QR, RA, RD echoed
  header.writeUInt16BE(1, 4);
  const answers = (addrs ?? []).map((a) => {
    const rr = Buffer.alloc(16);
    rr.writeUInt16BE(0xc00c, 0); // the name, by pointer to the question
    rr.writeUInt16BE(TYPE_A, 2);
    rr.writeUInt16BE(CLASS_IN, 4);
    rr.writeUInt32BE(TTL_S, 6);
    rr.writeUInt16BE(4, 10);
    a.split('.').forEach((o, i) => rr.writeUInt8(Number(o), 12 + i));
    return rr;
  });
  header.writeUInt16BE(answers.length, 6);
  return Buffer.concat([header, query.subarray(12, q.end), ...answers]);
}

const dotted = (n: number): string => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

export const isSynthetic = (ip: string): boolean => ip.startsWith('100.') && Number(ip.split('.')[1]) >= 64 && Number(ip.split('.')[1]) < 128;

export class SyntheticNames {
  #byName = new Map<string, string>();
  #byAddress = new Map<string, string>();

  constructor(private readonly etcd: Etcd3) {}

  /** The synthetic address of `name`: taken in etcd by the first host that asks, probing on a clash. */
  async addressOf(name: string): Promise<string> {
    const known = this.#byName.get(name);
    if (known) return known;
    const h = createHash('sha256').update(name).digest().readUInt32BE(0);
    for (let probe = 0; probe < 64; probe++) {
      const ip = dotted((SYNTHETIC_BASE + ((h + probe) % SYNTHETIC_SIZE)) >>> 0);
      const key = PREFIX + ip;
      await this.etcd.if(key, 'Create', '==', 0).then(this.etcd.put(key).value(name)).commit();
      const owner = await this.etcd.get(key).string();
      if (owner === name) {
        this.#byName.set(name, ip);
        this.#byAddress.set(ip, name);
        return ip;
      }
    }
    throw new Error(`no synthetic address free for ${name}`);
  }

  /** The name behind a synthetic address, if it is one. */
  async nameOf(ip: string): Promise<string | undefined> {
    const known = this.#byAddress.get(ip);
    if (known || !isSynthetic(ip)) return known;
    const name = await this.etcd.get(PREFIX + ip).string() ?? undefined;
    if (name) this.#byAddress.set(ip, name);
    return name;
  }
}

/** This host's answer for a name: its IPv4 addresses, or undefined when it does not resolve. */
export async function resolveHere(name: string): Promise<string[] | undefined> {
  try {
    return (await lookup(name, { family: 4, all: true })).map((a) => a.address);
  } catch {
    return undefined;
  }
}

