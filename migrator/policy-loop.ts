// The policy at work: twice a second, for the jobs running on this host, it
// samples their use (CPU, memory, local I/O), reads their traffic from the
// ledger, publishes the host's load, and asks policy.ts where each should run;
// a job the answer sends elsewhere is moved (one move by the policy at a time
// per host). Every decision is kept for `pj top`, counted in the metrics and
// logged (at info when the job moves or the reason changes, else at debug).
import type { Log } from '../common/log.js';
import type { Metrics } from '../common/metrics.js';
import type { ClusterState, HostView } from '../manager/cluster-state.js';
import type { Mesh } from '../manager/mesh/mesh.js';
import { PAGE, scanPages, type PageStore } from '../mem-layer/index.js';
import type { JobManager } from './job-manager.js';
import { alive } from './job-processes.js';
import type { JobRecord } from './jobs.js';
import type { TrafficLedger } from './ledger.js';
import { LocalIo } from './local-io.js';
import type { MoveCosts } from './move-costs.js';
import type { MoveResult } from './move-types.js';
import { decide, DEFAULT_TUNING, type Decision, type Policy, type PolicyTuning, type Traffic } from './policy.js';

/** Twice a second: a job that needs to move waits half a tick for the decision, on average. */
const TICK_MS = 500;
/**
 * The policy weighs the traffic of the last 2 s: long enough to average out a burst (traffic that
 * alternates every 0.5 s looks even), short enough to follow a shift (one second after it, the new
 * host has half the traffic).
 */
const POLICY_WINDOW_S = 2;
/** Traffic the policy weighs: not 'mem' (a moved job's pages come from where it was; they say nothing of where it should be). */
const WEIGHED_LAYERS = new Set(['fs', 'net', 'io']);
const DEFAULT_BUDGET_BYTES_PER_S = 2 ** 20;
/** After a move by the policy fails, the job is left alone this long. */
const FAILED_BACKOFF_MS = 30_000;
/** After a job leaves to shed load, the host's load is left to settle before the next. */
const SHED_SETTLE_MS = 5_000;
/** How long a measure of what a holder's store lacks of a job stays good. */
const HELD_FRESH_MS = 30_000;
/** Weight of a new CPU sample (per second) in a job's CPU figure. */
const CPU_ALPHA = 0.5;

export interface JobView {
  id: string; name: string; host: string; policy: Policy; rssBytes: number; cpu: number;
  /** Bytes per second by host over the policy's window ('io' and this host's rows are local). */
  traffic: Record<string, Traffic>;
  moves: number; movedAt?: string; moveReason?: string;
  decision?: Decision & { at: string };
}

interface Sampled { key: string; demandS: number; at: number; cpu: number; rss: number }

export class PolicyLoop {
  #timer: NodeJS.Timeout | undefined;
  #ticking = false;
  #sampled = new Map<string, Sampled>();
  #decisions = new Map<string, Decision & { at: string }>();
  /** What the last round saw of each job (its last decision is in #decisions). */
  #views = new Map<string, Omit<JobView, 'decision'>>();
  #failedAt = new Map<string, number>();
  #held = new Map<string, { bytes: number; at: number }>();
  #measuring = new Set<string>();
  #moving: string | undefined;
  #shedAt = 0;
  readonly #localIo: LocalIo;

  constructor(private readonly o: {
    jobs: JobManager; state: ClusterState; mesh: Mesh; ledger: TrafficLedger; costs: MoveCosts; store: PageStore;
    metrics: Metrics; log: Log; move: (id: string, to: string, why: string) => Promise<MoveResult>; tuning?: PolicyTuning;
    mountState?: () => string;
  }) {
    this.#localIo = new LocalIo(o.jobs.self, o.ledger);
  }

  start(): void {
    this.#timer = setInterval(() => void this.tick(), TICK_MS);
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** The jobs running here as the policy sees them. */
  views(): JobView[] {
    return [...this.#views.values()].map((v) => ({ ...v, decision: this.#decisions.get(v.id) }));
  }

  async tick(): Promise<void> {
    if (this.#ticking) return;
    this.#ticking = true;
    try {
      const { self } = this.o.jobs;
      const [records, hosts] = await Promise.all([this.o.jobs.table.list<JobRecord>(), this.o.state.hosts()]);
      const mine = records.map((r) => r.value).filter((r) => r.host === self && r.state === 'running' && alive(r.pid, r.pidStart));
      const now = Date.now();
      for (const r of mine) await this.#sample(r, now);
      for (const id of this.#sampled.keys()) if (!mine.some((r) => r.id === id)) this.#forget(id);
      this.#localIo.keepOnly(new Set([...this.#sampled.values()].map((s) => s.key)));
      const store = this.o.store.stats();
      await this.o.state.publishLoad(self, {
        load: [...this.#sampled.values()].reduce((n, s) => n + s.cpu, 0), jobs: mine.length, pageStore: { bytes: store.bytes, limit: store.limitBytes },
        ...(this.o.mountState ? { mount: this.o.mountState() } : {}),
      }).catch(() => {});
      for (const r of mine) this.#consider(r, hosts, now);
    } catch (e) {
      this.o.log.warn({ op: 'policy', err: (e as Error).message }, 'policy round failed; trying again');
    } finally {
      this.#ticking = false;
    }
  }

  /** A job that no longer runs here. */
  #forget(id: string): void {
    for (const m of [this.#sampled, this.#views, this.#decisions, this.#failedAt]) m.delete(id);
    for (const k of this.#held.keys()) if (k.startsWith(`${id} `)) this.#held.delete(k);
  }

  async #sample(r: JobRecord, now: number): Promise<void> {
    const sample = await this.o.jobs.procs.run('jobSample', r.pid);
    if (!sample) return;
    const key = `pidns:${sample.ns}`;
    this.o.ledger.name(key, r.id);
    this.#localIo.sample(key, new Map(sample.io));
    const u = sample.usage;
    const last = this.#sampled.get(r.id);
    // What it asks of the CPUs: time on one plus time waiting for one, so that a job's load does not
    // shrink when the machine is busy (three loops sharing two CPUs with others still want three).
    const rate = last && last.key === key ? Math.max(0, (u.demandS - last.demandS) / ((now - last.at) / 1000)) : 0;
    const cpu = last && last.key === key ? last.cpu + CPU_ALPHA * (rate - last.cpu) : 0;
    this.#sampled.set(r.id, { key, demandS: u.demandS, at: now, cpu, rss: u.rssBytes });
  }

  #traffic(key: string): Map<string, Traffic> {
    const out = new Map<string, Traffic>();
    for (const row of this.o.ledger.rates(key, POLICY_WINDOW_S)) {
      if (!WEIGHED_LAYERS.has(row.layer)) continue;
      const t = out.get(row.target) ?? { bytesPerS: 0, opsPerS: 0 };
      out.set(row.target, { bytesPerS: t.bytesPerS + row.bytesPerS, opsPerS: t.opsPerS + row.opsPerS });
    }
    return out;
  }

  #consider(r: JobRecord, hosts: HostView[], now: number): void {
    const s = this.#sampled.get(r.id);
    if (!s) return;
    const traffic = this.#traffic(s.key);
    const policy = r.policy ?? 'follow';
    this.#views.set(r.id, {
      id: r.id, name: r.name, host: r.host, policy, rssBytes: s.rss, cpu: s.cpu, traffic: Object.fromEntries(traffic),
      moves: r.moves, movedAt: r.movedAt, moveReason: r.moveReason,
    });
    if (this.o.jobs.busy.has(r.id) || this.#moving) return;
    if (now - (this.#failedAt.get(r.id) ?? 0) < FAILED_BACKOFF_MS) return;
    const up = hosts.filter((h) => h.state === 'up' && h.capabilities.migration);
    const d = decide({
      self: this.o.jobs.self,
      job: { policy, budgetBytesPerS: r.budget ?? DEFAULT_BUDGET_BYTES_PER_S, cpu: s.cpu,
        sinceMoveS: r.movedAt ? (now - Date.parse(r.movedAt)) / 1000 : Infinity },
      traffic,
      hosts: up.map((h) => ({ name: h.name, drained: h.drained, price: h.price ?? 1, load: h.use?.load ?? 0, maxLoad: h.maxLoad ?? Infinity })),
      costs: (h) => this.o.costs.peer(h),
      downtimeS: this.o.costs.downtimeS(),
      moveBytes: (to) => this.#moveBytes(r, s, to),
      tuning: this.o.tuning ?? DEFAULT_TUNING,
    });
    if (d.outcome === 'move' && d.why === 'host loaded') {
      if (now - this.#shedAt < SHED_SETTLE_MS) return;
      this.#shedAt = now;
    }
    this.#record(r, d);
    if (d.outcome === 'move' && d.to) this.#move(r, d.to, d.why);
  }

  #record(r: JobRecord, d: Decision): void {
    const previous = this.#decisions.get(r.id);
    this.#decisions.set(r.id, { ...d, at: new Date().toISOString() });
    this.o.metrics.counter('pj_policy_decisions_total', 'the policy\'s decisions, by policy, outcome and reason').inc({ policy: r.policy ?? 'follow', outcome: d.outcome, why: d.why });
    const level = d.outcome === 'move' || previous?.why !== d.why ? 'info' : 'debug';
    this.o.log[level]({ op: 'policy', job: r.id, outcome: d.outcome, to: d.to, why: d.why, detail: d.detail }, `policy: ${d.outcome === 'move' ? `move to ${d.to}` : 'stay'} (${d.detail})`);
  }

  #move(r: JobRecord, to: string, why: string): void {
    this.#moving = r.id;
    this.o.move(r.id, to, why).then(
      (res) => this.o.log.info({ op: 'policy-move', job: r.id, to, downtime_ms: res.downtime_ms }, 'the policy moved the job'),
      (e: Error) => {
        this.#failedAt.set(r.id, Date.now());
        this.#decisions.set(r.id, { outcome: 'stay', why: 'move failed', detail: `move to ${to} failed: ${e.message}`, at: new Date().toISOString() });
        this.o.log.warn({ op: 'policy-move', job: r.id, to, err: e.message }, 'the policy\'s move failed; the job stays for now');
      },
    ).finally(() => (this.#moving = undefined));
  }

  /**
   * The bytes a move to `to` would carry: the job's memory, less what `to`'s store holds when `to`
   * kept its pages (a return trip). That is measured (the job's pages hashed, `to` asked which it
   * lacks) in the background, and until then taken to be all of it.
   */
  #moveBytes(r: JobRecord, s: Sampled, to: string): number {
    if (!(r.holders ?? []).includes(to)) return s.rss;
    const k = `${r.id} ${to}`;
    const held = this.#held.get(k);
    if (held && Date.now() - held.at < HELD_FRESH_MS) return held.bytes;
    if (!this.#measuring.has(k)) {
      this.#measuring.add(k);
      this.#lacking(r, to).then((bytes) => this.#held.set(k, { bytes, at: Date.now() }), () => {}).finally(() => this.#measuring.delete(k));
    }
    return held?.bytes ?? s.rss;
  }

  async #lacking(r: JobRecord, to: string): Promise<number> {
    let bytes = 0;
    for (const pid of await this.o.jobs.procs.run('jobPids', r.pid)) {
      const scan = await scanPages(pid).catch(() => undefined);
      if (!scan) continue;
      const lacks = (await this.o.mesh.call(to, 'job', { op: 'store-lacks', hashes: scan.hashes })) as number[];
      bytes += lacks.length * PAGE;
    }
    return bytes;
  }
}
