// The destination's side of a move: it checks the files the job maps, takes
// the pre-copy's pages into this host's store, receives the images, restores
// them left stopped (lazy modes: with a pager that fills the memory from the
// store, the frozen source or another holder), resumes its copy once the
// source committed, and ends it if the source gave up or went silent without
// committing (fencing that commit off first). A lazy move whose manager died
// before every page arrived is taken over by the next one: its pager adopts the
// job's userfaultfds from their keeper (mem-layer/pager-keeper.ts).
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { PjError, codes } from '../common/errors.js';
import { crashPoint, faultActive } from '../common/fault.js';
import type { Metrics } from '../common/metrics.js';
import type { Mesh } from '../manager/mesh/mesh.js';
import { pingPeer } from '../manager/mesh-diagnostics.js';
import { HASH_BYTES, LazyFill, hashesAt, keeperSocket, type PageSources, type PageStore, type TaskManifest } from '../mem-layer/index.js';
import { CriuError, dropNetworkLocks, restore } from './criu.js';
import { receiveImages } from './image-transfer.js';
import { isDirectory, type JobManager } from './job-manager.js';
import { startTime } from './job-processes.js';
import type { JobRecord } from './jobs.js';
import type { TrafficLedger } from './ledger.js';
import { differingSystemFiles, type SystemFile } from './migratable.js';
import { MODES, TRANSFER_IDLE_MS, type MoveMode, type MoveResult } from './move-types.js';

/** The folder of the work dir that holds moves into this host, one per move key. */
export const INCOMING = 'incoming';
/** How long a destination keeps a move's state without hearing from the source; once restored, the commit is quick. */
const INCOMING_IDLE_MS = 60_000;
/** How long a move lost with the last manager is remembered: the source asks within a few seconds, and gives up after 5 minutes. */
const LOST_KEPT_MS = 10 * 60_000;
const LOST_CHECK_MS = 2000;
const RESTORED_IDLE_MS = 3_000;
/** The restore deadline when a test makes restores hang (PJ_FAULT=restore-hangs): the real one is 45 s. */
const HUNG_RESTORE_DEADLINE_MS = 3_000;
/** Pre-copy, before its commit: how long the last pages may not move before the move is given up. */
const PRECOPY_STALL_MS = 30_000;

/** A move into this host: `revision` is the job record's, which the source's commit is conditioned on. */
interface Incoming {
  id: string; from: string; dir: string; revision: string; mode: MoveMode;
  /** Other hosts whose stores hold the job's pages, when the source is gone. */
  holders: string[];
  /** Pins on the pages the pre-copy put in the store, until the move ends. */
  unpins: Array<() => void>;
  /** The job was stopped by its user: it resumes stopped. */
  stopped: boolean;
  /** The host's mounts in the job's mount namespace, bound from this host's at the restore. */
  mounts: string[];
  pid?: number; fill?: LazyFill; timer?: NodeJS.Timeout;
  /** Pages fetched from other hosts before the job ran again. */
  fetchedBeforeResume?: number;
}

/** What a lazy move in progress leaves in the marks folder, for the next manager to take it over. */
type MoveMark = Pick<Incoming, 'id' | 'from' | 'dir' | 'revision' | 'mode' | 'holders' | 'stopped' | 'mounts'> & { pid: number };

/**
 * What became of a move into this host: pages still coming ('filling'), every page here ('landed'),
 * over and forgotten ('done'), or lost with the last manager, whose pager died with it ('lost').
 */
export type MoveInStatus = 'filling' | 'landed' | 'done' | 'lost';

/** What the destination says once every page is there. */
export interface Landed { bytes: number; pages: number; pagesAfterResume: number; fromStore: number; faults: MoveResult['faults']; changes: MoveResult['memory_changes'] }

export class MovesIn {
  #incoming = new Map<string, Incoming>();
  /** Lazy moves lost with the last manager (key: job id), until the source took the job back. */
  #lost = new Map<string, string>();
  /** The copies of those moves, until recoverLostMoves ends them. */
  #lostCopies = new Map<string, { id: string; pid: number }>();
  /** Lazy moves of the last manager whose keeper may still hold the job, until recoverLostMoves takes them over. */
  #orphans = new Map<string, MoveMark>();
  /** Lazy moves into this host that have every page, until the source asks (allLocal). */
  #landed = new Map<string, Landed>();

  constructor(private readonly jobs: JobManager, private readonly mesh: Mesh, private readonly workDir: string, private readonly marks: string,
    private readonly store: PageStore, private readonly ledger: TrafficLedger, private readonly metrics: Metrics) {
    mkdirSync(marks, { recursive: true });
    // Known before this manager answers any source: a status asked of a lost move must never say 'done'.
    for (const key of readdirSync(marks)) {
      try {
        const mark = JSON.parse(readFileSync(join(marks, key), 'utf8')) as MoveMark;
        if (mark.dir && existsSync(keeperSocket(mark.dir)) && isCopyOf(mark.pid, mark.id)) this.#orphans.set(key, mark);
        else this.#lose(key, mark);
        jobs.busy.add(mark.id);
      } catch { /* a mark half written: its restore never finished */ }
    }
    const incoming = join(workDir, INCOMING);
    for (const key of existsSync(incoming) ? readdirSync(incoming) : []) if (!this.#orphans.has(key)) rmSync(join(incoming, key), { recursive: true, force: true });
  }

  #lose(key: string, mark: { id: string; pid: number }): void {
    this.#lost.set(key, mark.id);
    this.#lostCopies.set(key, mark);
  }

  /**
   * A lazy move is marked from the restore until every page is here. A mark found at start is a move
   * whose pager died with the last manager. Its copy waits for its pages in the pager's keeper: a new
   * pager adopts it, and the move goes on as if the source had gone silent (the copy resumes if the
   * source committed, and ends if not). A copy that cannot be adopted (no keeper, its images gone)
   * is ended, and the job is left to the source (which takes it back from its frozen copy: see
   * migrate.ts); this host does not record it as exited meanwhile.
   */
  async recoverLostMoves(): Promise<void> {
    for (const [key, mark] of this.#orphans) {
      this.#orphans.delete(key);
      const inc: Incoming = { ...mark, unpins: [] };
      try {
        inc.fill = new LazyFill(mark.dir, this.#sources(key, inc), this.store, this.jobs.log, true);
      } catch (e) {
        this.jobs.log.error({ op: 'job-move-in', job: mark.id, key, err: (e as Error).message }, 'could not adopt the pager\'s tasks from its keeper');
        this.#lose(key, mark);
        continue;
      }
      this.jobs.log.warn({ op: 'job-move-in', job: mark.id, key, from: mark.from }, 'adopted a move whose manager died before every page arrived: its pages come on');
      this.#incoming.set(key, inc);
      inc.fill.startBackground();
      await this.abort(key);
    }
    for (const [key, mark] of this.#lostCopies) {
      this.#lostCopies.delete(key);
      if (isCopyOf(mark.pid, mark.id)) await this.jobs.signalJob(mark.pid, 'SIGKILL').catch(() => {});
      this.jobs.log.error({ op: 'job-move-in', job: mark.id, key }, 'a move into this host lost its pages with the last manager: its copy here is ended, the source takes the job back');
      void this.#untilPlacedElsewhere(key, mark);
    }
  }

  /** Keeps a lost move until the job table no longer places the job's lost copy here (the source took it back, or never committed). */
  async #untilPlacedElsewhere(key: string, mark: { id: string; pid: number }): Promise<void> {
    const until = Date.now() + LOST_KEPT_MS;
    while (Date.now() < until) {
      const now = await this.jobs.table.get<JobRecord>(mark.id).catch(() => null);
      if (now !== null && (!now || now.value.host !== this.jobs.self || now.value.pid !== mark.pid)) break;
      await new Promise((r) => setTimeout(r, LOST_CHECK_MS));
    }
    this.#forgetLost(key);
  }

  #forgetLost(key: string): void {
    const id = this.#lost.get(key);
    if (id === undefined) return;
    this.#lost.delete(key);
    this.jobs.busy.delete(id);
    rmSync(join(this.marks, key), { force: true });
  }

  status(key: string): MoveInStatus {
    if (this.#lost.has(key)) return 'lost';
    if (this.#orphans.has(key)) return 'filling';
    if (this.#landed.has(key)) return 'landed';
    return this.#incoming.has(key) ? 'filling' : 'done';
  }

  async prepare(a: { id: string; key: string; mode: MoveMode; revision: string; systemFiles: SystemFile[]; mounts: string[]; cwd: string; holders?: string[]; stopped?: boolean }, from: string): Promise<void> {
    if (!MODES.includes(a.mode)) throw new PjError(codes.USAGE, `this host does not know the mode '${a.mode}'`);
    const differ = differingSystemFiles(a.systemFiles);
    if (!(await isDirectory(a.cwd))) differ.push(`${a.cwd}: the job's working directory is missing`);
    const mounts = Array.isArray(a.mounts) ? a.mounts.map(String) : [];
    // Asynchronously: a stat of this host's own /pj would wait for the thread that must answer it.
    for (const m of mounts) if (!(await exists(m))) differ.push(`${m}: a mount point the job has is missing`);
    if (differ.length) throw new PjError(codes.NOT_MIGRATABLE, `files the job maps differ on ${this.jobs.self}: ${differ.join('; ')}`);
    if (this.jobs.busy.has(a.id)) throw new PjError(codes.JOB_BUSY, `job ${a.id} is already moving here`);
    this.jobs.busy.add(a.id);
    const inc: Incoming = { id: a.id, from, mode: a.mode, revision: String(a.revision), dir: join(this.workDir, INCOMING, a.key), holders: a.holders ?? [], unpins: [], stopped: a.stopped === true, mounts };
    this.#incoming.set(a.key, inc);
    this.#touch(a.key);
    void nearestFirst(this.mesh, inc.holders).then((h) => (inc.holders = h));
  }

  /** Pre-copy: which of these hashes this host's store lacks (positions). */
  have(key: string, hashes: Buffer): number[] {
    this.#touch(key);
    this.#get(key);
    return this.store.missing(hashes);
  }

  /** Pre-copy: pages into this host's store, pinned until the move ends. */
  putPages(key: string, hashes: Buffer, pieces: Buffer[]): void {
    const inc = this.#get(key);
    this.#touch(key);
    inc.unpins.push(this.store.pin(hashes));
    this.store.put(hashes, pieces.length === 1 ? pieces[0] : Buffer.concat(pieces));
  }

  async receive(a: { key: string }, stream: AsyncIterable<Buffer>): Promise<{ bytes: number }> {
    const inc = this.#get(a.key);
    this.#touch(a.key);
    const bytes = await receiveImages(inc.dir, stream);
    if (faultActive('corrupt-images')) damage(inc.dir);
    return { bytes };
  }

  async restore(key: string): Promise<{ pid: number; pidStart: number }> {
    const inc = this.#get(key);
    this.#touch(key);
    crashPoint('destination-before-restore');
    try {
      // Lazy modes: the pager listens before CRIU's restore looks for it.
      if (inc.mode !== 'stop-copy') inc.fill = new LazyFill(inc.dir, this.#sources(key, inc), this.store, this.jobs.log);
      inc.pid = await restore(inc.dir, inc.mode !== 'stop-copy', inc.mounts, faultActive('restore-hangs') ? HUNG_RESTORE_DEADLINE_MS : undefined);
      if (inc.fill) writeFileSync(join(this.marks, key), JSON.stringify(markOf(inc)));
      // Pages go in from now on (the task stays stopped until the resume); pre-copy waits for all of them.
      inc.fill?.startBackground();
      if (inc.mode === 'pre-copy') await inc.fill!.allLocalUnlessStalled(PRECOPY_STALL_MS);
      this.#touch(key, RESTORED_IDLE_MS);
    } catch (e) {
      inc.fill?.stop();
      await dropNetworkLocks(inc.dir);
      throw e instanceof CriuError ? new PjError(codes.MIGRATION_ABORTED, `on ${this.jobs.self}: ${e.message}`) : e;
    }
    return { pid: inc.pid, pidStart: startTime(inc.pid) ?? 0 };
  }

  /** Where the pages this host's store lacks come from: the frozen source, else other holders; counted in the ledger. */
  #sources(key: string, inc: Incoming): PageSources {
    const latency = this.metrics.histogram('pj_page_fetch_seconds', 'how long a fetch of pages from another host took (a batch: on fault or in the background)');
    /** Pages from another host, timed and counted. */
    const fetch = async (from: string, args: Record<string, unknown>): Promise<Buffer> => {
      const started = performance.now();
      const pieces = (await this.mesh.call(from, 'job', args)) as Buffer[];
      latency.observe({ from }, (performance.now() - started) / 1000);
      const data = pieces.length === 1 ? pieces[0] : Buffer.concat(pieces);
      if (inc.pid) this.ledger.recordCaller(inc.pid, from, 'mem', 1, data.length);
      return data;
    };
    return {
      manifest: async () => (await this.mesh.call(inc.from, 'job', { op: 'manifest', key }, TRANSFER_IDLE_MS)) as TaskManifest[],
      fromSource: (id, addrs) => fetch(inc.from, { op: 'pages', key, id, addrs }),
      fromHolders: async (hashes) => {
        let last: Error = new PjError(codes.PAGES_LOST, 'no other host holds the job\'s pages');
        for (const h of inc.holders) {
          try {
            return await fetch(h, { op: 'stored-pages', hashes });
          } catch (e) {
            last = e as Error;
          }
        }
        throw last;
      },
      onlyAtSource: async (hashes) => {
        let only = [...Array(hashes.length / HASH_BYTES).keys()];
        for (const h of inc.holders) {
          if (!only.length) break;
          const asked = hashesAt(hashes, only);
          const lacking = (await this.mesh.call(h, 'job', { op: 'store-lacks', hashes: asked }).catch(() => undefined)) as number[] | undefined;
          if (lacking) only = lacking.map((k) => only[k]);
        }
        return only;
      },
    };
  }

  async resume(key: string): Promise<void> {
    const inc = this.#get(key);
    inc.fetchedBeforeResume = inc.fill?.pagesFetched ?? 0;
    if (inc.pid) await this.jobs.resumeHere(inc.pid, inc.stopped);
    if (inc.fill) this.#untilLocal(key, inc, inc.fill);
    else this.#finish(key);
  }

  /** Lazy modes, committed: the move ends when every page is here; a page that cannot be had ends the job. */
  #untilLocal(key: string, inc: Incoming, fill: LazyFill): void {
    clearTimeout(inc.timer);
    this.jobs.filling.add(inc.id);
    fill.allLocal.then(
      () => {
        const l = landed(fill, inc.fetchedBeforeResume ?? 0);
        this.#landed.set(key, l);
        const faults = this.metrics.counter('pj_page_faults_total', 'page faults of moved jobs, by where the pager had the page: local (given at once), handed (brought from this host after the fault), fetched (from another host)');
        for (const served of ['local', 'handed', 'fetched'] as const) faults.inc({ served }, l.faults?.[served] ?? 0);
        setTimeout(() => this.#landed.delete(key), INCOMING_IDLE_MS).unref();
        this.jobs.log.info({ op: 'job-move-in', job: inc.id, pages: fill.pagesTotal, fromStore: fill.pagesFromStore, fetched: fill.pagesFetched, faults: fill.stats().faults }, 'every page is here');
        void this.#stillOurs(inc);
      },
      (e: Error) => {
        this.jobs.log.error({ op: 'job-move-in', job: inc.id, err: e.message, code: codes.PAGES_LOST }, 'pages lost: the job is ended');
        if (inc.pid) void this.jobs.end(inc.id, inc.pid, `${codes.PAGES_LOST}`);
      },
    ).finally(() => {
      fill.stop();
      this.#finish(key);
    });
  }

  /** Lazy modes: resolves once every page of the move is here. */
  async allLocal(key: string): Promise<Landed> {
    const done = this.#landed.get(key);
    if (done) return done;
    const inc = this.#get(key);
    if (!inc.fill) throw new PjError(codes.USAGE, `move ${key} is stop-copy`);
    await inc.fill.allLocal;
    return landed(inc.fill, inc.fetchedBeforeResume ?? 0);
  }

  /**
   * The source gave up (or went silent, or this is a move the last manager left): our copy goes,
   * unless the job table says it is the job.
   */
  async abort(key: string): Promise<void> {
    const inc = this.#incoming.get(key);
    if (!inc) return;
    if (inc.pid) {
      let committed: boolean;
      try {
        committed = await this.#committed(inc);
      } catch (e) {
        // etcd does not answer: nothing is decided, ask again later.
        this.jobs.log.warn({ op: 'job-move-in', job: inc.id, err: (e as Error).message }, 'cannot tell whether the move committed yet');
        return this.#touch(key, RESTORED_IDLE_MS);
      }
      if (committed) await this.jobs.resumeHere(inc.pid, inc.stopped);
      else await this.jobs.signalJob(inc.pid, 'SIGKILL');
      if (!committed) await dropNetworkLocks(inc.dir);
      if (committed && inc.fill) return this.#untilLocal(key, inc, inc.fill);
      this.jobs.log.warn({ op: 'job-move-in', job: inc.id, from: inc.from, committed }, committed ? 'resumed a committed copy' : 'dropped an uncommitted copy');
    }
    this.#finish(key);
  }

  /**
   * Whether the source committed the move to us. If not yet, we fence it off: a write of the record
   * as it is, conditioned on the revision the source's commit needs, makes that commit fail for good.
   */
  async #committed(inc: Incoming): Promise<boolean> {
    for (;;) {
      const now = await this.jobs.table.get<JobRecord>(inc.id);
      if (!now) return false;
      if (now.value.host === this.jobs.self && now.value.pid === inc.pid) return true;
      if (now.modRevision !== inc.revision) return false;
      if (await this.jobs.table.compareAndSwap(inc.id, inc.revision, now.value)) return false;
    }
  }

  /**
   * A source that lost sight of us for long may have taken the job back from its frozen copy (see
   * migrate.ts): then this copy, though whole, is not the job, and ends.
   */
  async #stillOurs(inc: Incoming): Promise<void> {
    const now = await this.jobs.table.get<JobRecord>(inc.id).catch(() => undefined);
    if (!inc.pid || !now || (now.value.host === this.jobs.self && now.value.pid === inc.pid)) return;
    this.jobs.log.error({ op: 'job-move-in', job: inc.id, host: now.value.host }, 'the source took the job back while its pages came here: this copy ends');
    await this.jobs.signalJob(inc.pid, 'SIGKILL');
  }

  /** Whether a move of job `id` into this host was lost with the last manager (its copy here ended), the source not having taken it back yet. */
  lost(id: string): boolean {
    return [...this.#lost.values()].includes(id);
  }

  /** Whether a lazy move of job `id` into this host still fetches pages (or will, once the last manager's is taken over). */
  fetching(id: string): boolean {
    return [...this.#incoming.values()].some((inc) => inc.id === id && inc.fill) || [...this.#orphans.values()].some((m) => m.id === id);
  }

  #get(key: string): Incoming {
    const inc = this.#incoming.get(key);
    if (!inc) throw new PjError(codes.MIGRATION_ABORTED, `no move ${key} in progress on ${this.jobs.self}`);
    return inc;
  }

  #touch(key: string, idleMs = INCOMING_IDLE_MS): void {
    const inc = this.#incoming.get(key);
    if (!inc) return;
    clearTimeout(inc.timer);
    inc.timer = setTimeout(() => void this.abort(key), idleMs);
  }

  #finish(key: string): void {
    const inc = this.#incoming.get(key);
    if (!inc) return;
    inc.fill?.stop();
    for (const unpin of inc.unpins) unpin();
    clearTimeout(inc.timer);
    this.#incoming.delete(key);
    this.jobs.busy.delete(inc.id);
    this.jobs.filling.delete(inc.id);
    rmSync(inc.dir, { recursive: true, force: true });
    rmSync(join(this.marks, key), { force: true });
  }
}

function markOf(inc: Incoming): MoveMark {
  const { id, from, dir, revision, mode, holders, stopped, mounts, pid } = inc;
  return { id, from, dir, revision, mode, holders, stopped, mounts, pid: pid! };
}

function landed(fill: LazyFill, fetchedBeforeResume: number): Landed {
  const s = fill.stats();
  const us = (ns: number) => Math.round(ns / 100) / 10;
  return {
    bytes: fill.bytesFetched, pages: fill.pagesFetched, pagesAfterResume: fill.pagesFetched - fetchedBeforeResume, fromStore: fill.pagesFromStore,
    faults: {
      local: s.faultsOnSupplied, handed: s.faultsHanded, fetched: s.faultsFetched, local_p50_us: us(s.localP50Ns), local_p99_us: us(s.localP99Ns),
      handed_p50_us: us(s.handedP50Ns), fetched_p50_us: us(s.fetchedP50Ns), fetched_p99_us: us(s.fetchedP99Ns),
    },
    changes: { forks: s.forks, remaps: s.remaps, drops: s.drops },
  };
}

/** Whether `pid` is still the first process of job `id` (pj-init with the job's folder), not a pid used again. */
function isCopyOf(pid: number, id: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[1]?.endsWith(`/${id}`) === true;
  } catch {
    return false;
  }
}

/** Hosts nearest first (one ping each; one that does not answer goes last; ties keep their order). */
async function nearestFirst(mesh: Mesh, hosts: string[]): Promise<string[]> {
  const rtt = await Promise.all(hosts.map((h) => pingPeer(mesh, h, 1, 0, 1000).then((r) => r.rttsMs[0], () => Infinity)));
  return hosts.map((h, i) => ({ h, r: rtt[i] })).sort((x, y) => x.r - y.r).map((x) => x.h);
}

/** PJ_FAULT=corrupt-images: garbage over the start of every image, as a damaged stream would leave them. */
function damage(dir: string): void {
  for (const name of readdirSync(dir)) {
    const fd = openSync(join(dir, name), 'r+');
    writeSync(fd, randomBytes(64), 0, 64, 0);
    closeSync(fd);
  }
}

const exists = (path: string) => access(path).then(() => true, () => false);
