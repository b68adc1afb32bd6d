// Moving a job. The source checks that it can move, freezes it with CRIU
// (left stopped) and streams the images to the destination, which restores
// them (left stopped too); the source then commits the new location in the job
// table by compare-and-swap, the destination resumes its copy and the source
// ends its own. Before the commit, any failure resumes the source and ends the
// destination's copy; after it, the destination's copy is the job
// (reconciliation resumes it if the resume message is lost). Exactly one copy runs.
//
// Modes: `stop-copy` dumps every page into the images. The others dump with
// `--lazy-pages`: the memory stays in the frozen source (a SIGSTOP is queued
// on every task, so that no end of CRIU lets it run on) and the destination's
// pager takes each page from its page store when it is there, else fetches it.
// `pre-copy` and `hybrid` first copy the running job's pages into the
// destination's store in rounds (mem-layer/precopy.ts); `pre-copy` then fills
// every page before the resume, `post-copy` and `hybrid` after it. The source
// copy ends once every page is on the destination, after the source kept the
// job's pages in its own store (a return trip then moves only what changed).
import { closeSync, mkdirSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { PjError, codes } from '../common/errors.js';
import { crashPoint, faultActive } from '../common/fault.js';
import type { Mesh } from '../manager/mesh/mesh.js';
import { pingPeer } from '../manager/mesh-diagnostics.js';
import { FrozenMemory, LazyFill, precopy, type PageSources, type PageStore, type PrecopyResult, type TaskManifest } from '../mem-layer/index.js';
import { CriuError, closePageServer, dropNetworkLocks, dump, dumpLazy, restore } from './criu.js';
import { imageStream, receiveImages } from './image-transfer.js';
import { isDirectory, type JobManager } from './job-manager.js';
import { alive, jobPids, jobTasks, localJobInits, signalAll, startTime, stateOf } from './job-processes.js';
import type { JobRecord } from './jobs.js';
import type { TrafficLedger } from './ledger.js';
import { differingSystemFiles, inspectJob, type SystemFile } from './migratable.js';

export const MODES = ['hybrid', 'stop-copy', 'pre-copy', 'post-copy'] as const;
export type MoveMode = (typeof MODES)[number];

export interface MoveResult {
  job: string; from: string; to: string; mode: MoveMode;
  downtime_ms: number; dump_ms: number; transfer_ms: number; restore_ms: number; bytes_sent: number;
  /** Lazy modes: pre-copy rounds and their bytes, the images' bytes, pages fetched after the freeze or taken from the destination's store, and when the last one was there. */
  precopy_rounds?: number; bytes_precopy?: number; bytes_frozen?: number; bytes_lazy?: number;
  pages_from_store?: number; pages_fetched?: number; all_local_ms?: number;
  /**
   * Lazy modes: faults, and how long the pager took to serve them, by where the page was: in the pager
   * already (given, or its place in this host's store), brought from this host after the fault, fetched from another.
   */
  faults?: { local: number; handed: number; fetched: number; local_p50_us: number; local_p99_us: number; handed_p50_us: number; fetched_p50_us: number; fetched_p99_us: number };
  /** Set instead of the figures when the source's manager went away after committing. */
  note?: string;
}
export interface MoveProgress { phase: string; bytesSent: number; elapsedMs: number }

/** A transfer that makes no progress for this long (a cut link) is given up. */
const TRANSFER_IDLE_MS = 15_000;
const RESTORE_TIMEOUT_MS = 60_000;
/** Lazy modes: how long the source waits for the destination to hold every page. */
const ALL_LOCAL_TIMEOUT_MS = 10 * 60_000;
/** How long a destination keeps a move's state without hearing from the source; once restored, the commit is quick. */
const INCOMING_IDLE_MS = 60_000;
const RESTORED_IDLE_MS = 3_000;
/** How many hosts a job's record names as holding its pages (the most recent first). */
const MAX_HOLDERS = 4;

/** A move into this host: `revision` is the job record's, which the source's commit is conditioned on. */
interface Incoming {
  id: string; from: string; dir: string; revision: string; mode: MoveMode;
  /** Other hosts whose stores hold the job's pages, when the source is gone. */
  holders: string[];
  /** Pins on the pages the pre-copy put in the store, until the move ends. */
  unpins: Array<() => void>;
  pid?: number; fill?: LazyFill; timer?: NodeJS.Timeout;
}

/** What the destination says once every page is there. */
interface Landed { bytes: number; pages: number; fromStore: number; faults: MoveResult['faults'] }

/** The source's frozen copy: `dumped` once the images are complete; `release` ends CRIU's hold (the copy stays stopped). */
interface Frozen { dumped: Promise<void>; release(): Promise<void> }

export class Migrator {
  #progress = new Map<string, { phase: string; bytesSent: number; started: number }>();
  #incoming = new Map<string, Incoming>();
  /** Lazy moves out of this host: the frozen memory the destinations fetch from. */
  #frozen = new Map<string, FrozenMemory>();
  /** Lazy moves into this host that have every page, until the source asks (allLocal). */
  #landed = new Map<string, Landed>();

  constructor(private readonly jobs: JobManager, private readonly mesh: Mesh, private readonly workDir: string,
    private readonly store: PageStore, private readonly ledger: TrafficLedger) {
    jobs.stillFetching = async (rec) => Boolean(await this.mesh.call(rec.host, 'job', { op: 'fetching', id: rec.id }, 2000).catch(() => false));
  }

  progress(id: string): MoveProgress | undefined {
    const p = this.#progress.get(id);
    return p && { phase: p.phase, bytesSent: p.bytesSent, elapsedMs: Date.now() - p.started };
  }

  /** The source's side of a move. The job must run here. */
  async move(ref: string, to: string, mode: MoveMode = 'hybrid'): Promise<MoveResult> {
    if (!MODES.includes(mode)) throw new PjError(codes.USAGE, `--mode must be one of ${MODES.join(', ')}`);
    const j = await this.jobs.find(ref);
    const rec = j.value;
    const { self, log } = this.jobs;
    if (rec.host !== self) throw new PjError(codes.USAGE, `job ${rec.id} runs on ${rec.host}, not here`);
    if (to === self) throw new PjError(codes.USAGE, `job ${rec.id} already runs on ${to}`);
    if (rec.state !== 'running' || !alive(rec.pid, rec.pidStart)) throw new PjError(codes.NO_SUCH_JOB, `job ${rec.id} is not running`);
    if (this.jobs.busy.has(rec.id)) throw new PjError(codes.JOB_BUSY, `job ${rec.id} is already moving`);
    this.jobs.busy.add(rec.id);
    const key = `${rec.id}-${rec.moves + 1}-${randomBytes(3).toString('hex')}`;
    const dir = join(this.workDir, 'outgoing', key);
    const p = { phase: 'check', bytesSent: 0, started: Date.now() };
    this.#progress.set(rec.id, p);
    try {
      const found = await inspectJob(rec.pid, this.jobs.mount);
      if (found.offenders.length) {
        throw new PjError(codes.NOT_MIGRATABLE, `job ${rec.id} cannot move: ${found.offenders.map((o) => `pid ${o.pid} fd ${o.fd} ${o.path} (${o.why})`).join('; ')}`);
      }
      const holders = (rec.holders ?? []).filter((h) => h !== to);
      await this.mesh.call(to, 'job', { op: 'prepare', id: rec.id, key, mode, revision: j.modRevision, systemFiles: found.systemFiles, cwd: rec.cwd, holders }).catch((e) => { throw abort(e, rec); });
      const lazy = mode !== 'stop-copy';
      let pre: PrecopyResult = { rounds: 0, bytes: 0 };
      if (mode === 'pre-copy' || mode === 'hybrid') {
        p.phase = 'pre-copy';
        pre = await this.#precopy(rec, to, key, p).catch(async (e) => {
          await this.mesh.call(to, 'job', { op: 'abort', key }).catch(() => {});
          throw abort(e, rec);
        });
      }
      p.phase = 'dump';
      mkdirSync(dir, { recursive: true });
      const frozen = Date.now();
      const imagesFrom = p.bytesSent;
      const f = lazy ? await this.#freezeLazy(rec, dir, key) : this.#freeze(rec, dir);
      // The images stream to the destination while CRIU writes them.
      const sending = this.mesh.upload(to, 'job-images', { key }, imageStream(dir, f.dumped, p), TRANSFER_IDLE_MS);
      sending.catch(() => {}); // observed below, once the dump is done
      try {
        await f.dumped;
      } catch (e) {
        await f.release();
        signalAll(jobPids(rec.pid), 'SIGCONT');
        await dropNetworkLocks(dir);
        await this.mesh.call(to, 'job', { op: 'abort', key }).catch(() => {});
        throw abort(e, rec);
      }
      const dumpedAt = Date.now();
      let restored = 0;
      let newPid = 0;
      let resumed = 0;
      let sent = 0;
      try {
        p.phase = 'transfer';
        await sending;
        sent = Date.now();
        p.phase = 'restore';
        const r = (await this.mesh.call(to, 'job', { op: 'restore', key }, mode === 'pre-copy' ? ALL_LOCAL_TIMEOUT_MS : RESTORE_TIMEOUT_MS)) as { pid: number; pidStart: number };
        restored = Date.now() - sent;
        newPid = r.pid;
        this.#frozen.get(key)?.restored();
        p.phase = 'commit';
        const nextHolders = lazy ? [...new Set([self, ...holders])].slice(0, MAX_HOLDERS) : holders;
        if (!(await this.#commit(j.id, j.modRevision, { ...rec, host: to, pid: r.pid, pidStart: r.pidStart, moves: rec.moves + 1, holders: nextHolders }))) {
          throw new PjError(codes.MIGRATION_ABORTED, 'the job table changed during the move');
        }
        crashPoint('source-after-commit');
        p.phase = 'resume';
        await this.mesh.call(to, 'job', { op: 'resume', key }).catch((e: Error) => {
          log.warn({ op: 'job-move', job: rec.id, to, err: e.message }, 'committed, but the resume message was lost: the destination resumes it when it reconciles');
        });
        resumed = Date.now();
      } catch (e) {
        // Not committed: the destination's copy goes, ours resumes.
        await this.mesh.call(to, 'job', { op: 'abort', key }).catch(() => {});
        await f.release();
        signalAll(jobPids(rec.pid), 'SIGCONT');
        await dropNetworkLocks(dir);
        log.warn({ op: 'job-move', job: rec.id, to, phase: p.phase, err: (e as Error).message }, 'move aborted; the job resumed here');
        throw abort(e, rec);
      }
      const result: MoveResult = {
        job: rec.id, from: self, to, mode, downtime_ms: resumed - frozen, dump_ms: dumpedAt - frozen,
        transfer_ms: sent - dumpedAt, restore_ms: restored, bytes_sent: p.bytesSent,
      };
      try {
        if (lazy) {
          p.phase = 'pages';
          Object.assign(result, { precopy_rounds: pre.rounds, bytes_precopy: pre.bytes, bytes_frozen: p.bytesSent - imagesFrom });
          const l = (await this.mesh.call(to, 'job', { op: 'all-local', key }, ALL_LOCAL_TIMEOUT_MS)) as Landed;
          Object.assign(result, { bytes_lazy: l.bytes, pages_from_store: l.fromStore, pages_fetched: l.pages, all_local_ms: Date.now() - resumed, faults: l.faults });
        }
      } catch (e) {
        // Committed: the job is the destination's, whatever became of its pages; say so rather than fail.
        result.note = `moved, but ${to} did not confirm that every page arrived: ${(e as Error).message}`;
        log.error({ op: 'job-move', job: rec.id, to, err: (e as Error).message }, 'committed; the destination did not confirm every page');
      } finally {
        // Committed: the source copy ends (once the destination holds every page, or when it cannot),
        // its pages kept in this host's store first.
        const m = this.#frozen.get(key);
        if (m) await m.keep(this.store).catch((e: Error) => log.warn({ op: 'job-move', job: rec.id, err: e.message }, 'could not keep the job\'s pages here'));
        await f.release();
        signalAll(jobPids(rec.pid), 'SIGKILL');
        await dropNetworkLocks(dir);
      }
      log.info({ op: 'job-move', ...result, pid: newPid }, 'job moved');
      return result;
    } finally {
      this.jobs.busy.delete(rec.id);
      this.#progress.delete(rec.id);
      this.#frozen.delete(key);
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** stop-copy: CRIU writes every page into the images and exits, leaving the job stopped. */
  #freeze(rec: JobRecord, dir: string): Frozen {
    return { dumped: dump(rec.pid, dir), release: async () => {} };
  }

  /** The pre-copy rounds into the destination's store, while the job runs. */
  #precopy(rec: JobRecord, to: string, key: string, p: { bytesSent: number }): Promise<PrecopyResult> {
    return precopy(() => [...jobTasks(rec.pid).values()], {
      missing: async (hashes) => (await this.mesh.call(to, 'job', { op: 'have', key, hashes })) as number[],
      put: async (hashes, data) => { await this.mesh.call(to, 'job', { op: 'put-pages', key, hashes }, TRANSFER_IDLE_MS, data); },
    }, (n) => (p.bytesSent += n));
  }

  /**
   * Lazy modes: CRIU writes the images but the pages and keeps the job frozen, its memory in place;
   * a SIGSTOP queued on every task keeps it stopped whichever way CRIU ends. Destinations read the
   * memory through this host (`pages`), not through CRIU's page server, which is only closed at the end.
   */
  async #freezeLazy(rec: JobRecord, dir: string, key: string): Promise<Frozen> {
    const port = await freePort();
    const d = dumpLazy(rec.pid, dir, port);
    d.done.catch(() => {}); // a failure shows in `ready`, or does not matter once the pages are moved
    let ready = false;
    const dumped = d.ready.then(() => {
      ready = true;
      signalAll(jobPids(rec.pid), 'SIGSTOP');
      this.#frozen.set(key, new FrozenMemory(jobTasks(rec.pid), dir));
    });
    return {
      dumped,
      release: async () => {
        if (ready) await closePageServer(port).catch(() => {});
        await d.done.catch(() => {});
      },
    };
  }

  /** Lazy modes: pages of a frozen job for a destination's pager. */
  pages(a: { key: string; id: number; addrs: Buffer }): Buffer {
    return this.#frozenOf(a.key).read(a.id, a.addrs);
  }

  /** Lazy modes: the frozen job's manifest (its pages' hashes). */
  manifest(key: string): Promise<TaskManifest[]> {
    return this.#frozenOf(key).manifest();
  }

  /** A move's frozen memory; after a restart of this manager, the job's stopped copy found here (pages by address only). */
  #frozenOf(key: string): FrozenMemory {
    let m = this.#frozen.get(key);
    if (!m) {
      const id = key.split('-')[0];
      const copy = localJobInits().find((c) => c.dir.endsWith(`/${id}`) && /^[Tt]$/.test(stateOf(c.pid) ?? ''));
      if (!copy) throw new PjError(codes.PAGES_LOST, `no frozen job for move ${key} on ${this.jobs.self}`);
      this.jobs.log.warn({ op: 'job-move', job: id, pid: copy.pid }, 'serving the pages of a copy frozen before this manager started');
      this.#frozen.set(key, (m = new FrozenMemory(jobTasks(copy.pid))));
    }
    return m;
  }

  /** Whether a lazy move of job `id` into this host still fetches pages. */
  fetching(id: string): boolean {
    return [...this.#incoming.values()].some((inc) => inc.id === id && inc.fill);
  }

  /** Which of these hashes this host's store lacks (positions): a destination asks which pages only its source holds. */
  storeLacks(hashes: Buffer): number[] {
    return this.store.missing(hashes);
  }

  /** Pages of this host's store by hash, for a destination whose source is gone; all or none. */
  storedPages(hashes: Buffer): Buffer {
    const r = this.store.getMany(hashes);
    if (r.missing.length) throw new PjError(codes.PAGES_LOST, `${r.missing.length} of ${hashes.length / 16} pages are not in ${this.jobs.self}'s store`);
    return r.data;
  }

  /** The compare-and-swap of the new location; when etcd's answer is lost, the record says what happened. */
  async #commit(id: string, modRevision: string, next: JobRecord): Promise<boolean> {
    try {
      return await this.jobs.table.compareAndSwap(id, modRevision, next);
    } catch (e) {
      for (let i = 0; i < 20; i++) {
        const now = await this.jobs.table.get<JobRecord>(id).catch(() => undefined);
        if (now) return now.value.host === next.host && now.value.pid === next.pid;
        await new Promise((r) => setTimeout(r, 250));
      }
      throw e;
    }
  }

  // --- the destination's side ---

  async prepare(a: { id: string; key: string; mode: MoveMode; revision: string; systemFiles: SystemFile[]; cwd: string; holders?: string[] }, from: string): Promise<void> {
    if (!MODES.includes(a.mode)) throw new PjError(codes.USAGE, `this host does not know the mode '${a.mode}'`);
    const differ = differingSystemFiles(a.systemFiles);
    if (!(await isDirectory(a.cwd))) differ.push(`${a.cwd}: the job's working directory is missing`);
    if (differ.length) throw new PjError(codes.NOT_MIGRATABLE, `files the job maps differ on ${this.jobs.self}: ${differ.join('; ')}`);
    if (this.jobs.busy.has(a.id)) throw new PjError(codes.JOB_BUSY, `job ${a.id} is already moving here`);
    this.jobs.busy.add(a.id);
    const inc: Incoming = { id: a.id, from, mode: a.mode, revision: String(a.revision), dir: join(this.workDir, 'incoming', a.key), holders: a.holders ?? [], unpins: [] };
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
      inc.pid = await restore(inc.dir, inc.mode !== 'stop-copy');
      // Pages go in from now on (the task stays stopped until the resume); pre-copy waits for all of them.
      inc.fill?.startBackground();
      if (inc.mode === 'pre-copy') await inc.fill!.allLocal;
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
    const fetched = (from: string, pieces: Buffer[]): Buffer => {
      const data = pieces.length === 1 ? pieces[0] : Buffer.concat(pieces);
      if (inc.pid) this.ledger.record(this.ledger.jobOf(inc.pid), from, 'mem', 1, data.length);
      return data;
    };
    return {
      manifest: async () => (await this.mesh.call(inc.from, 'job', { op: 'manifest', key }, TRANSFER_IDLE_MS)) as TaskManifest[],
      fromSource: async (id, addrs) => fetched(inc.from, (await this.mesh.call(inc.from, 'job', { op: 'pages', key, id, addrs })) as Buffer[]),
      fromHolders: async (hashes) => {
        let last: Error = new PjError(codes.PAGES_LOST, 'no other host holds the job\'s pages');
        for (const h of inc.holders) {
          try {
            return fetched(h, (await this.mesh.call(h, 'job', { op: 'stored-pages', hashes })) as Buffer[]);
          } catch (e) {
            last = e as Error;
          }
        }
        throw last;
      },
      onlyAtSource: async (hashes) => {
        let only = [...Array(hashes.length / 16).keys()];
        for (const h of inc.holders) {
          if (!only.length) break;
          const asked = Buffer.concat(only.map((i) => hashes.subarray(i * 16, (i + 1) * 16)));
          const lacking = (await this.mesh.call(h, 'job', { op: 'store-lacks', hashes: asked }).catch(() => undefined)) as number[] | undefined;
          if (lacking) only = lacking.map((k) => only[k]);
        }
        return only;
      },
    };
  }

  resume(key: string): void {
    const inc = this.#get(key);
    if (inc.pid) signalAll(jobPids(inc.pid), 'SIGCONT');
    if (inc.fill) this.#untilLocal(key, inc, inc.fill);
    else this.#finish(key);
  }

  /** Lazy modes, committed: the move ends when every page is here; a page that cannot be had ends the job. */
  #untilLocal(key: string, inc: Incoming, fill: LazyFill): void {
    clearTimeout(inc.timer);
    this.jobs.filling.add(inc.id);
    fill.startBackground();
    fill.allLocal.then(
      () => {
        this.#landed.set(key, landed(fill));
        setTimeout(() => this.#landed.delete(key), INCOMING_IDLE_MS).unref();
        this.jobs.log.info({ op: 'job-move-in', job: inc.id, pages: fill.pagesTotal, fromStore: fill.pagesFromStore, fetched: fill.pagesFetched, faults: fill.stats().faults }, 'every page is here');
      },
      (e: Error) => {
        this.jobs.log.error({ op: 'job-move-in', job: inc.id, err: e.message, code: codes.PAGES_LOST }, 'pages lost: the job is ended');
        if (inc.pid) this.jobs.end(inc.id, inc.pid, `${codes.PAGES_LOST}`);
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
    const fill = this.#get(key).fill;
    if (!fill) throw new PjError(codes.USAGE, `move ${key} is stop-copy`);
    await fill.allLocal;
    return landed(fill);
  }

  /** The source gave up (or went silent): our copy goes, unless the job table says it is the job. */
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
      signalAll(jobPids(inc.pid), committed ? 'SIGCONT' : 'SIGKILL');
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
  }
}

function landed(fill: LazyFill): Landed {
  const s = fill.stats();
  const us = (ns: number) => Math.round(ns / 100) / 10;
  return {
    bytes: fill.bytesFetched, pages: fill.pagesFetched, fromStore: fill.pagesFromStore,
    faults: {
      local: s.faultsOnSupplied, handed: s.faultsHanded, fetched: s.faultsFetched, local_p50_us: us(s.localP50Ns), local_p99_us: us(s.localP99Ns),
      handed_p50_us: us(s.handedP50Ns), fetched_p50_us: us(s.fetchedP50Ns), fetched_p99_us: us(s.fetchedP99Ns),
    },
  };
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

function abort(e: unknown, rec: JobRecord): PjError {
  if (e instanceof PjError && (e.code === codes.MIGRATION_ABORTED || e.code === codes.NOT_MIGRATABLE || e.code === codes.JOB_BUSY)) return e;
  return new PjError(codes.MIGRATION_ABORTED, `job ${rec.id} stays on ${rec.host}: ${(e as Error).message}`, { cause: e });
}

/** A TCP port free on this host's loopback now (for CRIU's page server). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}
