// Routes: which host reaches a destination. `CIDR=HOST` (10.1.0.0/16=h2) or
// `NAME=HOST` (db.internal=h2, *.corp=h3), kept in etcd (/pj/routes/<target>)
// so that every host agrees. The most specific route wins (longest prefix; an
// exact name before a wildcard); with no route a destination is reached locally.
import { isIPv4 } from 'node:net';
import type { Etcd3 } from 'etcd3';
import { PjError, codes } from '../common/errors.js';
import { fromEtcd } from '../manager/cluster-state.js';

const PREFIX = '/pj/routes/';
const REFRESH_MS = 2000;

export interface Route { target: string; host: string }

/** Parses `TARGET=HOST`; throws PJ_ERR_USAGE with the reason. */
export function parseRoute(spec: string): Route {
  const m = /^([^=\s]+)=([A-Za-z0-9_.-]+)$/.exec(spec);
  if (!m) throw new PjError(codes.USAGE, `--route ${spec}: want CIDR=HOST or NAME=HOST`);
  const target = m[1].toLowerCase();
  if (/^[\d.]+(\/\d+)?$/.test(target)) {
    const [ip, bits = '32'] = target.split('/');
    if (!isIPv4(ip) || Number(bits) > 32) throw new PjError(codes.USAGE, `--route ${spec}: ${target} is not an IPv4 address or CIDR`);
    return { target: `${ip}/${Number(bits)}`, host: m[2] };
  }
  if (!/^(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(target)) throw new PjError(codes.USAGE, `--route ${spec}: ${target} is not a host name`);
  return { target, host: m[2] };
}

const ipNumber = (ip: string): number => ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);

export class RouteTable {
  #routes: Route[] | undefined;
  #loadedAt = 0;

  constructor(private readonly etcd: Etcd3) {}

  async add(routes: Route[]): Promise<void> {
    for (const r of routes) await fromEtcd('add route', () => this.etcd.put(PREFIX + r.target).value(r.host).exec());
    this.#loadedAt = 0;
  }

  /** The cluster's routes; while etcd does not answer, the ones last read (none before the first read). */
  async list(): Promise<Route[]> {
    if (Date.now() - this.#loadedAt > REFRESH_MS) {
      try {
        const all = await fromEtcd('routes', () => this.etcd.getAll().prefix(PREFIX).strings());
        this.#routes = Object.entries(all).map(([k, host]) => ({ target: k.slice(PREFIX.length), host }));
        this.#loadedAt = Date.now();
      } catch (e) {
        if (!this.#routes) throw e;
      }
    }
    return this.#routes!;
  }

  /** The host a route names for an IPv4 address, if any. */
  async forAddress(ip: string): Promise<string | undefined> {
    const n = ipNumber(ip);
    let best: { bits: number; host: string } | undefined;
    for (const r of await this.list()) {
      if (!r.target.includes('/')) continue;
      const [net, b] = r.target.split('/');
      const bits = Number(b);
      const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
      if (((n & mask) >>> 0) === ((ipNumber(net) & mask) >>> 0) && (!best || bits > best.bits)) best = { bits, host: r.host };
    }
    return best?.host;
  }

  /** The host a route names for a DNS name, if any. */
  async forName(name: string): Promise<string | undefined> {
    const lower = name.toLowerCase().replace(/\.$/, '');
    const routes = (await this.list()).filter((r) => !r.target.includes('/'));
    const exact = routes.find((r) => r.target === lower);
    if (exact) return exact.host;
    const wild = routes.filter((r) => r.target.startsWith('*.') && lower.endsWith(r.target.slice(1))).sort((a, b) => b.target.length - a.target.length);
    return wild[0]?.host;
  }
}
