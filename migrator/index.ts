// The migrator's surface: jobs (run, ps, kill, logs, wait) and moving them
// (pj mv), served to the CLI through this agent and to other agents over the
// mesh; and the traffic ledger the layers record into.
import { existsSync, readdirSync, rmSync, statfsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import { PjError, codes } from '../common/errors.js';
import type { Log } from '../common/log.js';
import type { Metrics } from '../common/metrics.js';
import type { ClusterState, HostView } from '../manager/cluster-state.js';
import type { Mesh } from '../manager/mesh/mesh.js';
import { JobManager, type JobNetwork, type RunRequest } from './job-manager.js';
import type { JobUsage } from './job-processes.js';
import type { JobRecord } from './jobs.js';
import type { TrafficLedger } from './ledger.js';
import type { ProcReader } from './proc-reader.js';
import { drainHost } from './drain.js';
import { isUser, mayActOn, rootOnly, userOf, visibleTo, type Asker } from './job-access.js';
import { Migrator } from './migrate.js';
import { INCOMING } from './move-in.js';
import { MoveCosts } from './move-costs.js';
import type { Policy, PolicyTuning } from './policy.js';
import { PolicyLoop, type JobView as PolicyView } from './policy-loop.js';
import type { MoveMode } from './move-types.js';
import { PageStore } from '../mem-layer/index.js';

export { TrafficLedger, type LedgerRow } from './ledger.js';
export { ProcReader } from './proc-reader.js';
export type { JobNetwork } from './job-manager.js';
export { JOBS_EXPORT, type JobRecord } from './jobs.js';
export type { DrainResult } from './drain.js';
export { POLICIES, DEFAULT_TUNING, type Policy, type PolicyTuning } from './policy.js';
export type { JobView as PolicyView } from './policy-loop.js';
export { MODES, type MoveMode, type MoveProgress, type MoveResult } from './move-types.js';

export interface JobView extends JobRecord { usage?: JobUsage }

const MOVE_TIMEOUT_MS = 15 * 60_000;

export interface MigratorLayer {
  /** A CLI request (`pj run`, `pj ps`, …) of `who` (job-access.ts); undefined when `op` is not the migrator's. */
  control(op: string, a: Record<string, unknown>, who?: Asker): Promise<unknown> | undefined;
  start(): void;
  stop(): void;
}

/** The real folder behind this host's jobs export. */
export const jobsPath = (stateDir: string): string => join(stateDir, 'jobs');

/**
 * Where a host keeps the images of the moves it takes part in: in memory (tmpfs, /dev/shm) when there
 * is one: written to a disk, a GiB of images is held back by the kernel's dirty-page throttling
 * (measured here: 1 GiB written in 1 MiB writes at 400 MB/s). Unique per agent (state dir).
 */
export function migrationDir(host: string, stateDir: string): string {
  if (statfsSync('/dev/shm').type !== TMPFS_MAGIC) return join(stateDir, 'migrations');
  return join('/dev/shm', `picojump-${host}-${createHash('sha256').update(resolve(stateDir)).digest('hex').slice(0, 10)}`);
}
const TMPFS_MAGIC = 0x01021994;

/** Empties the work dir but for the moves in, which a next manager may take over (MovesIn keeps those it adopts). */
function clearWork(work: string): void {
  for (const name of existsSync(work) ? readdirSync(work) : []) if (name !== INCOMING) rmSync(join(work, name), { recursive: true, force: true });
}

/** The page store's bound when the agent is given none. */
export const DEFAULT_PAGE_STORE_BYTES = 2 * 1024 ** 3;

export interface MigratorOptions {
  self: string; mount: string; stateDir: string; mesh: Mesh; state: ClusterState; log: Log; ledger: TrafficLedger; metrics: Metrics; procs: ProcReader;
  pageStoreBytes?: number; net?: JobNetwork; dropFileLocks?: (tids: number[]) => Promise<unknown>; tuning?: PolicyTuning;
  /** Whether this host's /pj answers, published with its load. */
  mountState?: () => string;
}

export function startMigrator(o: MigratorOptions): MigratorLayer {
  const jobs = new JobManager(o.self, o.mount, jobsPath(o.stateDir), o.state.jobs, o.log, o.procs);
  jobs.net = o.net;
  if (o.dropFileLocks) jobs.dropFileLocks = o.dropFileLocks;
  // Images of moves a crash interrupted are of no use (reconciliation decides which copy runs), but
  // those of lazy moves in, which the next pager takes over: MovesIn keeps what it adopts.
  const work = migrationDir(o.self, o.stateDir);
  clearWork(work);
  const store = new PageStore(join(o.stateDir, 'pages'), o.pageStoreBytes ?? DEFAULT_PAGE_STORE_BYTES);
  const costs = new MoveCosts();
  o.mesh.onCallDone((c) => costs.observeCall(c));
  const migrator = new Migrator(jobs, o.mesh, work, store, o.ledger, o.metrics, costs, {
    hostUp: (host) => o.state.liveHost(host).then(() => true, (e: PjError) => (e.code === codes.HOST_UNREACHABLE ? false : undefined)),
    marksDir: join(o.stateDir, 'moves-in'),
  });
  const policy = new PolicyLoop({ jobs, state: o.state, mesh: o.mesh, ledger: o.ledger, costs, store, metrics: o.metrics, log: o.log, tuning: o.tuning, mountState: o.mountState,
    move: (id, to, why) => migrator.move(id, to, 'hybrid', `policy: ${why}`) });
  const records = async () => (await o.state.jobs.list<JobRecord>()).map((j) => j.value);
  /** Runs `op` where the job runs (here, or its host over the mesh). */
  const atHost = async (host: string, op: string, args: Record<string, unknown>, timeoutMs?: number): Promise<unknown> =>
    host === o.self ? local(op, args) : o.mesh.call(host, 'job', { op, ...args }, timeoutMs);

  async function local(op: string, a: Record<string, unknown>): Promise<unknown> {
    switch (op) {
      case 'run': return jobs.run(a as unknown as RunRequest);
      case 'usage': return jobs.usage(a.ids as string[], await records());
      case 'kill': return jobs.kill((await jobs.find(String(a.id))).value, a.signal as NodeJS.Signals);
      case 'by-ns': return (await jobs.byNamespace(Number(a.ns), await records())) ?? null;
      case 'mv': return migrator.move(String(a.id), String(a.to), (a.mode ?? 'hybrid') as MoveMode);
      case 'progress': return migrator.progress(String(a.id)) ?? null;
      case 'policy-view': return policy.views();
      default: throw new PjError(codes.USAGE, `bad job request '${op}'`);
    }
  }

  o.mesh.handle('job', (a: Record<string, unknown>, ctx) => {
    switch (a?.op) {
      case 'prepare': return migrator.incoming.prepare(a as never, ctx.from);
      case 'restore': return migrator.incoming.restore(String(a.key));
      case 'resume': return migrator.incoming.resume(String(a.key));
      case 'abort': return migrator.incoming.abort(String(a.key));
      case 'pages': return migrator.pages(a as { key: string; id: number; addrs: Buffer });
      case 'manifest': return migrator.manifest(String(a.key));
      case 'fetching': return migrator.incoming.fetching(String(a.id));
      case 'lost': return migrator.incoming.lost(String(a.id));
      case 'have': return migrator.incoming.have(String(a.key), a.hashes as Buffer);
      case 'put-pages': return migrator.incoming.putPages(String(a.key), a.hashes as Buffer, ctx.attachment ?? []);
      case 'stored-pages': return migrator.storedPages(a.hashes as Buffer);
      case 'store-lacks': return migrator.storeLacks(a.hashes as Buffer);
      case 'all-local': return migrator.incoming.allLocal(String(a.key));
      case 'move-status': return migrator.incoming.status(String(a.key));
      default: return local(String(a?.op), a ?? {});
    }
  });
  o.mesh.handle('job-images', (a: { key: string }, ctx) => {
    if (!ctx.stream) throw new PjError(codes.PROTOCOL, 'job-images is an upload');
    return migrator.incoming.receive(a, ctx.stream);
  });

  async function ps(): Promise<JobView[]> {
    const all = await records();
    const byHost = new Map<string, string[]>();
    for (const r of all) if (r.state === 'running') byHost.set(r.host, [...(byHost.get(r.host) ?? []), r.id]);
    const usage: Record<string, JobUsage> = {};
    await Promise.all([...byHost].map(async ([host, ids]) => {
      Object.assign(usage, await (atHost(host, 'usage', { ids }) as Promise<Record<string, JobUsage>>).catch(() => ({})));
    }));
    return all.map((r) => ({ ...r, usage: usage[r.id] })).sort((a, b) => a.startedAt.localeCompare(b.startedAt));
  }

  /**
   * A move, run by the job's host. If that host's manager goes away meanwhile, the job table says how
   * it ended: committed (the job runs on `to`; reconciliation resumes it there) or not.
   */
  async function moveVia(rec: JobRecord, to: string, mode?: MoveMode): Promise<unknown> {
    try {
      return await atHost(rec.host, 'mv', { id: rec.id, to, mode }, MOVE_TIMEOUT_MS);
    } catch (e) {
      const code = (e as PjError).code;
      if (rec.host === o.self || (code !== codes.HOST_UNREACHABLE && code !== codes.TIMEOUT)) throw e;
      const now = (await o.state.jobs.get<JobRecord>(rec.id))?.value;
      if (now && now.host === to && now.moves > rec.moves) return { job: rec.id, from: rec.host, to, mode: mode ?? 'hybrid', committed: true, note: `the manager of ${rec.host} went away after the commit` };
      throw new PjError(codes.MIGRATION_ABORTED, `job ${rec.id} stays on ${rec.host}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** What the policy sees of every job, from every host that is up. */
  async function top(): Promise<{ jobs: PolicyView[]; hosts: HostView[] }> {
    const hosts = await o.state.hosts();
    const views = await Promise.all(hosts.filter((h) => h.state === 'up').map((h) => (atHost(h.name, 'policy-view', {}) as Promise<PolicyView[]>).catch(() => [])));
    return { jobs: views.flat().sort((a, b) => a.id.localeCompare(b.id)), hosts };
  }

  /** Jobs neither start on nor move to a drained host. */
  async function refuseDrained(host: string): Promise<void> {
    if ((await o.state.hosts()).find((h) => h.name === host)?.drained) throw new PjError(codes.USAGE, `host ${host} is drained: no job goes there until pj host undrain ${host}`);
  }

  async function jobOfNamespace(ns: number): Promise<JobRecord> {
    const hosts = [...new Set((await records()).filter((r) => r.state === 'running').map((r) => r.host))];
    for (const host of hosts) {
      const r = (await atHost(host, 'by-ns', { ns }).catch(() => null)) as JobRecord | null;
      if (r) return r;
    }
    throw new PjError(codes.NOT_A_JOB, 'that process is not in a job: start programs with `pj run -- CMD` to be able to move them');
  }

  return {
    control(op, a, who) {
      /** The job `a.id` names, if `who` may `action` it; a change is logged with who asked. */
      const owned = async (action: string, change = true) => {
        const j = await jobs.find(String(a.id));
        mayActOn(who, j.value, action);
        if (change) o.log.info({ op: `job-${op}`, job: j.id, uid: who?.uid ?? 0, pid: who?.pid }, `uid ${who?.uid ?? 0} asked to ${action} job ${j.id}`);
        return j;
      };
      switch (op) {
        // The job runs as who asked for it, whatever the request says.
        case 'run': return refuseDrained(String(a.on ?? o.self)).then(() => atHost(String(a.on ?? o.self), 'run', { ...a, user: userOf(who) }));
        case 'ps': return ps().then((all) => visibleTo(who, all));
        case 'page-store': return Promise.resolve(store.stats());
        case 'job': return owned('see', false).then((j) => j.value);
        case 'rm': return owned('remove').then(() => jobs.remove(String(a.id)));
        case 'job-of-ns': return jobOfNamespace(Number(a.ns)).then((r) => (mayActOn(who, r, 'move'), r));
        case 'logs': return owned('read the output of', false).then((j) => jobs.output(j.value, a.stream === 'stderr' ? 'stderr' : 'stdout', Number(a.offset ?? 0)));
        case 'kill': return owned('signal').then((j) => atHost(j.value.host, 'kill', { id: j.id, signal: a.signal ?? 'SIGTERM' }));
        case 'mv': return refuseDrained(String(a.to)).then(() => owned('move')).then((j) => moveVia(j.value, String(a.to), a.mode as MoveMode | undefined));
        case 'mv-progress': return owned('see', false).then(() => atHost(String(a.from), 'progress', { id: String(a.id) }));
        case 'policy': return a.policy == null && a.budget == null
          ? owned('see', false).then(async (j) => ((await atHost(j.value.host, 'policy-view', {}).catch(() => [])) as PolicyView[]).find((v) => v.id === j.id) ?? j.value)
          : owned('set the policy of').then(() => jobs.setPolicy(String(a.id), a.policy as Policy | undefined, a.budget as number | undefined));
        case 'top': return top().then(async (t) => {
          if (!isUser(who)) return t;
          const mine = new Set(visibleTo(who, await records()).map((r) => r.id));
          return { ...t, jobs: t.jobs.filter((j) => mine.has(j.id)) };
        });
        case 'drain': return rootOnly(who, 'drain a host').then(() => drainHost(o.state, String(a.host), a.on !== false, Number(a.waitMs ?? 120_000)));
        default: return undefined;
      }
    },
    start: () => {
      void migrator.incoming.recoverLostMoves().catch((e: Error) => o.log.error({ op: 'job-move-in', err: e.message }, 'could not look for moves lost with the last manager')).finally(() => jobs.start());
      policy.start();
    },
    stop: () => {
      policy.stop();
      jobs.stop();
      store.close();
      clearWork(work);
    },
  };
}
