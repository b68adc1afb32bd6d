// Routes: which host reaches a destination. `CIDR=HOST` (10.1.0.0/16=h2) or
// `NAME=HOST` (db.internal=h2, *.corp=h3), kept in etcd (/pj/routes/<target>)
// so that every host agrees. The most specific route wins (longest prefix; an
// exact name before a wildcard); with no route a destination is reached locally.
// A route may be for some users' or groups' jobs only (`…=HOST:users=1000+1001,groups=50`,
// numbers: the same on every host): other jobs' connections to it are refused.
import { isIPv4 } from 'node:net';
import type { Etcd3 } from 'etcd3';
import { PjError, codes } from '../common/errors.js';
import { fromEtcd } from '../manager/cluster-state.js';

const PREFIX = '/pj/routes/';
const REFRESH_MS = 2000;

/** A route; `users`, `groups`: the only jobs that may use it (a job's uid, or its gid or a group of its user). */
export interface Route { target: string; host: string; users?: number[]; groups?: number[] }

/** Who a job runs as, for the routes limited to some. */
export interface RouteUser { uid: number; gid: number; groups: number[] }

/** Parses `TARGET=HOST[:users=U+U,groups=G+G]`; throws PJ_ERR_USAGE with the reason. */
export function parseRoute(spec: string): Route {
  const m = /^([^=\s]+)=([A-Za-z0-9_.-]+)(?::(.+))?$/.exec(spec);
  if (!m) throw new PjError(codes.USAGE, `--route ${spec}: want CIDR=HOST or NAME=HOST, then :users=U+U,groups=G+G if only some may use it`);
  let target = m[1].toLowerCase();
  if (/^[\d.]+(\/\d+)?$/.test(target)) {
    const [ip, bits = '32'] = target.split('/');
    if (!isIPv4(ip) || Number(bits) > 32) throw new PjError(codes.USAGE, `--route ${spec}: ${target} is not an IPv4 address or CIDR`);
    target = `${ip}/${Number(bits)}`;
  } else if (!/^(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(target)) throw new PjError(codes.USAGE, `--route ${spec}: ${target} is not a host name`);
  const route: Route = { target, host: m[2] };
  for (const opt of m[3]?.split(',') ?? []) {
    const [k, v = ''] = opt.split('=', 2);
    const ids = v.split('+').map(Number);
    if ((k !== 'users' && k !== 'groups') || !ids.every((n) => Number.isInteger(n) && n >= 0)) {
      throw new PjError(codes.USAGE, `--route ${spec}: '${opt}' is not users=UID+UID or groups=GID+GID`);
    }
    route[k] = ids;
  }
  return route;
}

/** Whether a job may use `route`; who it runs as (`userOf`) is asked only of a route limited to some. Root's jobs may use any. */
export async function mayUseRoute(route: Route, userOf: () => Promise<RouteUser | undefined>): Promise<boolean> {
  if (!route.users && !route.groups) return true;
  const u = await userOf();
  if (!u || u.uid === 0) return true;
  return Boolean(route.users?.includes(u.uid) || route.groups?.some((g) => g === u.gid || u.groups.includes(g)));
}

/** A route's limits as `pj routes` and --route write them ('' for none). */
export function routeLimits(r: Route): string {
  return [r.users ? `users=${r.users.join('+')}` : '', r.groups ? `groups=${r.groups.join('+')}` : ''].filter(Boolean).join(',');
}

const ipNumber = (ip: string): number => ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);

export class RouteTable {
  #routes: Route[] | undefined;
  #loadedAt = 0;

  constructor(private readonly etcd: Etcd3) {}

  async add(routes: Route[]): Promise<void> {
    // The host alone, or (limited to some jobs) the route as JSON.
    for (const r of routes) await fromEtcd('add route', () => this.etcd.put(PREFIX + r.target).value(r.users || r.groups ? JSON.stringify(r) : r.host).exec());
    this.#loadedAt = 0;
  }

  /** The cluster's routes; while etcd does not answer, the ones last read (none before the first read). */
  async list(): Promise<Route[]> {
    if (Date.now() - this.#loadedAt > REFRESH_MS) {
      try {
        const all = await fromEtcd('routes', () => this.etcd.getAll().prefix(PREFIX).strings());
        this.#routes = Object.entries(all).map(([k, v]) => (v.startsWith('{') ? { ...(JSON.parse(v) as Route), target: k.slice(PREFIX.length) } : { target: k.slice(PREFIX.length), host: v }));
        this.#loadedAt = Date.now();
      } catch (e) {
        if (!this.#routes) throw e;
      }
    }
    return this.#routes!;
  }

  /** The route for an IPv4 address, if any. */
  async forAddress(ip: string): Promise<Route | undefined> {
    const n = ipNumber(ip);
    let best: { bits: number; route: Route } | undefined;
    for (const r of await this.list()) {
      if (!r.target.includes('/')) continue;
      const [net, b] = r.target.split('/');
      const bits = Number(b);
      const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
      if (((n & mask) >>> 0) === ((ipNumber(net) & mask) >>> 0) && (!best || bits > best.bits)) best = { bits, route: r };
    }
    return best?.route;
  }

  /** The route for a DNS name, if any. */
  async forName(name: string): Promise<Route | undefined> {
    const lower = name.toLowerCase().replace(/\.$/, '');
    const routes = (await this.list()).filter((r) => !r.target.includes('/'));
    const exact = routes.find((r) => r.target === lower);
    if (exact) return exact;
    const wild = routes.filter((r) => r.target.startsWith('*.') && lower.endsWith(r.target.slice(1))).sort((a, b) => b.target.length - a.target.length);
    return wild[0];
  }
}
