// Cluster state in etcd: membership under leases, and the job table, changed
// only in transactions so that etcd (not whichever manager spoke last) decides.
//   /pj/members/<host>  the host has joined once (no lease: a down host stays listed)
//   /pj/alive/<host>    present while the host's manager keeps its lease (TTL 2 s)
//   /pj/load/<host>     what the host's jobs use and its page store holds, renewed twice a second (same lease)
//   /pj/drained/<host>  present while the host is drained (pj host drain): its jobs leave, none come
//   /pj/jobs/<id>       the job table; compare-and-swap on mod revision
// etcd may be away for any time: every call has a deadline and fails with
// PJ_ERR_ETCD_UNAVAILABLE; what must go on without it (the /pj tree, finding
// peers already known) uses the last view read; the lease is taken again once
// etcd is back.
import { Etcd3, type Lease } from 'etcd3';
import { PjError, codes } from '../common/errors.js';
import type { Log } from '../common/log.js';

export const LEASE_TTL_S = 2;
/** The deadline of each etcd request. */
const ETCD_CALL_MS = 3000;
/** How often a lease that was lost is asked for again, at most. */
const REGRANT_MAX_MS = 1000;
const MEMBERS = '/pj/members/';
const ALIVE = '/pj/alive/';
const JOBS = '/pj/jobs/';
const LOAD = '/pj/load/';
const DRAINED = '/pj/drained/';

/** Whom another host's callers become on an export's disk: root becomes the anonymous user ('root'), everyone does ('all'), nobody does ('none'). */
export type Squash = 'none' | 'root' | 'all';

export interface ExportInfo {
  name: string; path: string; readOnly: boolean; kind: 'dir' | 'device';
  /** Absent: root_squash, anonuid and anongid 65534 (manager/exports.ts squashOf). */
  squash?: Squash; anonUid?: number; anonGid?: number;
  /** The hosts that may use it (and its owner); absent: every host. */
  hosts?: string[];
}

export interface HostRecord {
  name: string;
  address: string;
  port: number;
  pid: number;
  exports: ExportInfo[];
  capabilities: Record<string, boolean | string>;
  version: string;
  startedAt: string;
  /** What an hour of the host costs (pj agent --price): the policy 'cheap' seeks the cheapest. */
  price: number;
  /** The CPU load above which the policy 'balance' sheds jobs (pj agent --max-load; default: its CPUs). */
  maxLoad: number;
}

/** A host's use, as its manager last published it. */
export interface HostLoad {
  /** CPUs busy with the host's jobs (over the last seconds). */
  load: number;
  jobs: number;
  pageStore: { bytes: number; limit: number };
  /** Whether the host's /pj answers: ok, down, stuck or remounting (its watchdog's finding). */
  mount?: string;
}

export interface HostView extends HostRecord { state: 'up' | 'down'; drained: boolean; use?: HostLoad }

export interface Versioned<T> { value: T; modRevision: string }

/** A failure of an etcd request, as PJ_ERR_ETCD_UNAVAILABLE. */
export function etcdUnavailable(what: string, e: unknown): PjError {
  return e instanceof PjError ? e : new PjError(codes.ETCD_UNAVAILABLE, `etcd did not answer (${what}): ${(e as Error).message}`, { cause: e });
}

/** Runs an etcd request; any failure of etcd's is PJ_ERR_ETCD_UNAVAILABLE. */
export async function fromEtcd<T>(what: string, request: () => Promise<T>): Promise<T> {
  try {
    return await request();
  } catch (e) {
    throw etcdUnavailable(what, e);
  }
}

export class ClusterState {
  readonly etcd: Etcd3;
  readonly jobs: JobTable;
  #lease: Lease | undefined;
  #closed = false;
  /** The hosts as last read, for what goes on while etcd is away. */
  #lastHosts: HostView[] | undefined;

  constructor(url: string, private readonly log: Log) {
    this.etcd = new Etcd3({ hosts: url, dialTimeout: 2000, defaultCallOptions: (c) => (c.isStream ? {} : { deadline: Date.now() + ETCD_CALL_MS }) });
    this.jobs = new JobTable(this.etcd);
  }

  /** Waits until etcd answers, for at most `timeoutMs`. */
  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.etcd.get('/pj/ready-probe').exec();
        return;
      } catch (e) {
        if (Date.now() > deadline) throw new PjError(codes.CLUSTER, `etcd did not answer within ${timeoutMs} ms: ${(e as Error).message}`, { cause: e });
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  /**
   * Joins the cluster: writes the member record and keeps the liveness key under a lease. A lease
   * lost (etcd away longer than its TTL) is asked for again until etcd grants one.
   */
  async register(host: HostRecord): Promise<void> {
    await fromEtcd('register', () => this.etcd.put(MEMBERS + host.name).value(JSON.stringify(host)).exec());
    let regranting = false;
    const grant = async (): Promise<void> => {
      const lease = this.etcd.lease(LEASE_TTL_S);
      this.#lease = lease;
      lease.on('lost', (err) => {
        if (this.#closed || this.#lease !== lease || regranting) return;
        this.log.warn({ op: 'lease-lost', reason: err.message }, 'etcd lease lost; registering again once etcd answers');
        regranting = true;
        void regrant();
      });
      try {
        await lease.put(ALIVE + host.name).value(JSON.stringify(host));
      } catch (e) {
        lease.release(); // no keep-alive for a lease that was never granted
        throw e;
      }
    };
    /** One loop at a time asks for a new lease, less and less often, until etcd grants one. */
    const regrant = async (): Promise<void> => {
      for (let delay = 200; !this.#closed; delay = Math.min(delay * 2, REGRANT_MAX_MS)) {
        await new Promise((r) => setTimeout(r, delay));
        try {
          await grant();
          this.log.info({ op: 'lease-grant' }, 'registered again in etcd');
          break;
        } catch (e) {
          this.log.debug({ op: 'lease-grant', err: (e as Error).message }, 'etcd does not grant a lease yet');
        }
      }
      regranting = false;
    };
    await grant();
  }

  /** The hosts, each up or down, as etcd has them now. */
  async hosts(): Promise<HostView[]> {
    const [members, alive, loads, drained] = await fromEtcd('hosts', () => Promise.all([
      this.etcd.getAll().prefix(MEMBERS).strings(),
      this.etcd.getAll().prefix(ALIVE).strings(),
      this.etcd.getAll().prefix(LOAD).strings(),
      this.etcd.getAll().prefix(DRAINED).keys(),
    ]));
    const views: HostView[] = [];
    for (const [key, raw] of Object.entries(members)) {
      const name = key.slice(MEMBERS.length);
      const live = alive[ALIVE + name];
      const use = live && loads[LOAD + name] ? (JSON.parse(loads[LOAD + name]) as HostLoad) : undefined;
      views.push({ ...(JSON.parse(live ?? raw) as HostRecord), state: live ? 'up' : 'down', drained: drained.includes(DRAINED + name), ...(use ? { use } : {}) });
    }
    this.#lastHosts = views.sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
    return this.#lastHosts;
  }

  /** The hosts; while etcd is away, as last read (the /pj tree stays as it was). */
  async hostsOrLastKnown(): Promise<HostView[]> {
    try {
      return await this.hosts();
    } catch (e) {
      if (this.#lastHosts) return this.#lastHosts;
      throw e;
    }
  }

  /**
   * A live host's record; PJ_ERR_HOST_UNREACHABLE when it holds no lease. While etcd is away, the
   * record last read of a host that was up (peers already known stay reachable).
   */
  async liveHost(name: string): Promise<HostRecord> {
    let live: string | null;
    try {
      live = await this.etcd.get(ALIVE + name).string();
    } catch (e) {
      const last = this.#lastHosts?.find((h) => h.name === name && h.state === 'up');
      if (last) return last;
      throw etcdUnavailable('live host', e);
    }
    if (live) return JSON.parse(live) as HostRecord;
    const known = await fromEtcd('member', () => this.etcd.get(MEMBERS + name).string());
    if (known) throw new PjError(codes.HOST_UNREACHABLE, `host ${name} is down (its manager holds no lease in etcd)`, { host: name });
    throw new PjError(codes.NO_SUCH_HOST, `no host named ${name} in this cluster`, { host: name });
  }

  /** Publishes this host's use under its lease (gone with the host). */
  async publishLoad(host: string, use: HostLoad): Promise<void> {
    await fromEtcd('publish load', async () => { await this.#lease?.put(LOAD + host).value(JSON.stringify(use)); });
  }

  /** Drains a host (its jobs leave, none come) or ends that; kept without a lease, across restarts. */
  async setDrained(host: string, drained: boolean): Promise<void> {
    await fromEtcd('drain', async () => {
      if (drained) await this.etcd.put(DRAINED + host).value(new Date().toISOString());
      else await this.etcd.delete().key(DRAINED + host);
    });
  }

  /** Leaves the cluster: revokes the lease so that peers see us down at once. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#lease?.revoke().catch(() => {});
    this.etcd.close();
  }
}

/** The job table. Every change is a transaction conditioned on what the writer last read. */
export class JobTable {
  constructor(private readonly etcd: Etcd3) {}

  async get<T>(id: string): Promise<Versioned<T> | undefined> {
    const res = await fromEtcd('job', () => this.etcd.get(JOBS + id).exec());
    const kv = res.kvs[0];
    return kv ? { value: JSON.parse(kv.value.toString()) as T, modRevision: kv.mod_revision } : undefined;
  }

  async list<T>(): Promise<Array<Versioned<T> & { id: string }>> {
    const res = await fromEtcd('jobs', () => this.etcd.getAll().prefix(JOBS).exec());
    return res.kvs.map((kv) => ({ id: kv.key.toString().slice(JOBS.length), value: JSON.parse(kv.value.toString()) as T, modRevision: kv.mod_revision }));
  }

  /** Creates the entry only if no entry exists: of managers racing to create one id, exactly one wins. */
  async create<T>(id: string, value: T): Promise<boolean> {
    const res = await fromEtcd('create job', () => this.etcd.if(JOBS + id, 'Create', '==', 0).then(this.etcd.put(JOBS + id).value(JSON.stringify(value))).commit());
    return res.succeeded;
  }

  /** Replaces the entry only if nobody changed it since `modRevision` was read. */
  async compareAndSwap<T>(id: string, modRevision: string, value: T): Promise<boolean> {
    const res = await fromEtcd('change job', () => this.etcd.if(JOBS + id, 'Mod', '==', modRevision).then(this.etcd.put(JOBS + id).value(JSON.stringify(value))).commit());
    return res.succeeded;
  }

  /** Deletes the entry only if nobody changed it since `modRevision` was read. */
  async compareAndDelete(id: string, modRevision: string): Promise<boolean> {
    const res = await fromEtcd('remove job', () => this.etcd.if(JOBS + id, 'Mod', '==', modRevision).then(this.etcd.delete().key(JOBS + id)).commit());
    return res.succeeded;
  }
}
