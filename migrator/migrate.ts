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
// This file is the source's side (and a holder's); move-in.ts the destination's.
import { mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { PjError, codes } from '../common/errors.js';
import { crashPoint, faultActive } from '../common/fault.js';
import type { Metrics } from '../common/metrics.js';
import type { Mesh } from '../manager/mesh/mesh.js';
import { FrozenMemory, HASH_BYTES, precopy, type PageStore, type PrecopyResult, type TaskManifest } from '../mem-layer/index.js';
import { closePageServer, dropNetworkLocks, dump, dumpLazy } from './criu.js';
import { imageStream } from './image-transfer.js';
import type { JobManager } from './job-manager.js';
import { alive, stateOf } from './job-processes.js';
import { takenBack, type JobRecord } from './jobs.js';
import type { TrafficLedger } from './ledger.js';
import { inspectJob } from './migratable.js';
import type { MoveCosts } from './move-costs.js';

import { MovesIn, type Landed, type MoveInStatus } from './move-in.js';
import { MODES, TRANSFER_IDLE_MS, type MoveMode, type MoveProgress, type MoveResult } from './move-types.js';

const RESTORE_TIMEOUT_MS = 60_000;
/** Lazy modes: how long the source waits for the destination to hold every page. */
const ALL_LOCAL_TIMEOUT_MS = 10 * 60_000;
/** How long a source waits to learn what became of a destination that stopped answering after the commit. */
const LOST_WAIT_MS = 5 * 60_000;
const STATUS_TIMEOUT_MS = 5000;
const STATUS_RETRY_MS = 1000;
/** A destination whose lease stays away this long is gone (a stopped or restarting manager comes back sooner). */
const HOST_GONE_MS = 15_000;
/** How many hosts a job's record names as holding its pages (the most recent first). */
const MAX_HOLDERS = 4;

/** The source's frozen copy: `dumped` once the images are complete; `release` ends CRIU's hold (the copy stays stopped). */
interface Frozen { dumped: Promise<void>; release(): Promise<void> }

export class Migrator {
  private readonly hostUp: (host: string) => Promise<boolean | undefined>;
  #progress = new Map<string, { phase: string; bytesSent: number; started: number }>();
  /** Lazy moves out of this host: the frozen memory the destinations fetch from. */
  #frozen = new Map<string, FrozenMemory>();
  /** This host's side of the moves into it. */
  readonly incoming: MovesIn;

  constructor(private readonly jobs: JobManager, private readonly mesh: Mesh, private readonly workDir: string,
    private readonly store: PageStore, ledger: TrafficLedger, private readonly metrics: Metrics, private readonly costs: MoveCosts,
    o: {
      /** Whether a host holds its lease in etcd (undefined: etcd cannot say now). */
      hostUp: (host: string) => Promise<boolean | undefined>;
      /** Where lazy moves into this host are marked until every page is here (kept across restarts). */
      marksDir: string;
    }) {
    this.hostUp = o.hostUp;
    this.incoming = new MovesIn(jobs, mesh, workDir, o.marksDir, store, ledger, metrics);
    // For a restarted source's reconciliation, about a frozen copy of a job the table places elsewhere.
    jobs.lostThere = async (rec) => Boolean(await this.mesh.call(rec.host, 'job', { op: 'lost', id: rec.id }, 2000).catch(() => false));
    jobs.stillFetching = async (rec) => Boolean(await this.mesh.call(rec.host, 'job', { op: 'fetching', id: rec.id }, 2000).catch(() => false));
  }

  progress(id: string): MoveProgress | undefined {
    const p = this.#progress.get(id);
    return p && { phase: p.phase, bytesSent: p.bytesSent, elapsedMs: Date.now() - p.started };
  }

  /**
   * The source's side of a move (the job must run here), counted in the metrics and the policy's
   * costs. Its outcome is one line of the log: 'job moved' (info), or 'move failed' (warn) with the
   * reason and the phase it failed in.
   */
  async move(ref: string, to: string, mode: MoveMode = 'hybrid', reason = 'by hand'): Promise<MoveResult> {
    const moves = this.metrics.counter('pj_migrations_total', 'moves this host started, by mode and outcome');
    try {
      const r = await this.#move(ref, to, mode, reason);
      moves.inc({ mode, outcome: 'moved' });
      this.metrics.histogram('pj_migration_downtime_seconds', 'how long moved jobs were stopped, by mode').observe({ mode }, r.downtime_ms / 1000);
      this.costs.observeMove(r);
      return r;
    } catch (e) {
      const code = (e as PjError).code ?? 'error';
      const outcome = code === codes.USAGE ? 'refused' : code === codes.NOT_MIGRATABLE ? 'not-migratable' : code === codes.NO_SUCH_JOB ? 'no-job' : 'aborted';
      moves.inc({ mode, outcome });
      this.jobs.log.warn({ op: 'job-move', job: ref, to, mode, why: reason, outcome, code, phase: (e as { phase?: string }).phase, err: (e as Error).message }, 'move failed');
      throw e;
    }
  }

  async #move(ref: string, to: string, mode: MoveMode, reason: string): Promise<MoveResult> {
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
      const found = await inspectJob(rec.pid, this.jobs.mount, this.jobs.procs);
      if (found.offenders.length) {
        throw new PjError(codes.NOT_MIGRATABLE, `job ${rec.id} cannot move: ${found.offenders.map((o) => `pid ${o.pid} fd ${o.fd} ${o.path} (${o.why})`).join('; ')}`);
      }
      const holders = (rec.holders ?? []).filter((h) => h !== to);
      await this.mesh.call(to, 'job', { op: 'prepare', id: rec.id, key, mode, revision: j.modRevision, systemFiles: found.systemFiles, mounts: found.mounts, cwd: rec.cwd, holders, stopped: rec.stopped === true }).catch((e) => { throw abort(e, rec); });
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
      // The job's connections leave their links first, so that CRIU sees only the job's own loopback.
      await this.jobs.net?.detach(rec.pid).catch(async (e) => {
        await this.jobs.resumeHere(rec.pid, rec.stopped);
        await this.mesh.call(to, 'job', { op: 'abort', key }).catch(() => {});
        throw abort(e, rec);
      });
      const frozen = Date.now();
      const imagesFrom = p.bytesSent;
      const f = lazy ? await this.#freezeLazy(rec, dir, key, found.mounts) : this.#freeze(rec, dir, found.mounts);
      // The images stream to the destination while CRIU writes them.
      const sending = this.mesh.upload(to, 'job-images', { key }, imageStream(dir, f.dumped, p), TRANSFER_IDLE_MS);
      sending.catch(() => {}); // observed below, once the dump is done
      try {
        await f.dumped;
      } catch (e) {
        await f.release();
        await dropNetworkLocks(dir, rec.pid);
        await this.jobs.resumeHere(rec.pid, rec.stopped);
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
        crashPoint('source-before-commit');
        // Someone else's write to the job's record (a racing manager's): the commit below must lose.
        if (faultActive('record-changed-before-commit')) await this.jobs.table.compareAndSwap(j.id, j.modRevision, { ...rec });
        p.phase = 'commit';
        const nextHolders = lazy ? [...new Set([self, ...holders])].slice(0, MAX_HOLDERS) : holders;
        if (!(await this.#commit(j.id, j.modRevision, { ...rec, host: to, pid: r.pid, pidStart: r.pidStart, moves: rec.moves + 1, holders: nextHolders, movedAt: new Date().toISOString(), moveReason: reason, takenBackFrom: undefined }))) {
          throw new PjError(codes.MIGRATION_ABORTED, 'the job table changed during the move');
        }
        crashPoint('source-after-commit');
        // The copy here stays frozen (it may still serve pages), but its POSIX locks on /pj files are
        // the moved copy's now: they go before it resumes, or they would stand in its way.
        await this.jobs.procs.run('jobThreads', rec.pid).then((tids) => this.jobs.dropFileLocks(tids)).catch(() => {});
        p.phase = 'resume';
        await this.mesh.call(to, 'job', { op: 'resume', key }).catch((e: Error) => {
          log.warn({ op: 'job-move', job: rec.id, to, err: e.message }, 'committed, but the resume message was lost: the destination resumes it when it reconciles');
        });
        resumed = Date.now();
      } catch (e) {
        // Not committed: the destination's copy goes, ours resumes.
        await this.mesh.call(to, 'job', { op: 'abort', key }).catch(() => {});
        await f.release();
        await dropNetworkLocks(dir, rec.pid);
        await this.jobs.resumeHere(rec.pid, rec.stopped);
        throw abort(e, rec);
      }
      const result: MoveResult = {
        job: rec.id, from: self, to, mode, downtime_ms: resumed - frozen, dump_ms: dumpedAt - frozen,
        transfer_ms: sent - dumpedAt, restore_ms: restored, bytes_sent: p.bytesSent,
      };
      let takenBack = false;
      try {
        if (lazy) {
          p.phase = 'pages';
          Object.assign(result, { precopy_rounds: pre.rounds, bytes_precopy: pre.bytes, bytes_frozen: p.bytesSent - imagesFrom });
          const l = await this.#allLocal(to, key, ALL_LOCAL_TIMEOUT_MS);
          Object.assign(result, { bytes_lazy: l.bytes, pages_from_store: l.fromStore, pages_fetched: l.pages, pages_fetched_after_resume: l.pagesAfterResume, all_local_ms: Date.now() - resumed, faults: l.faults, memory_changes: l.changes });
        }
      } catch (e) {
        // Committed, but until the destination has every page the only whole copy is the frozen one here.
        log.error({ op: 'job-move', job: rec.id, to, err: (e as Error).message }, 'committed; the destination did not confirm every page');
        const landed = await this.#confirmedAfterAll(rec.id, to, key);
        if (landed === 'lost') takenBack = await this.#takeBack(rec, to, newPid);
        if (!takenBack) result.note = `moved, but ${to} did not confirm that every page arrived: ${(e as Error).message}`;
      } finally {
        if (takenBack) {
          // The job is this copy again: it resumes here, as after a move that failed before the commit.
          this.#frozen.delete(key);
          await f.release();
          await dropNetworkLocks(dir, rec.pid);
          await this.jobs.resumeHere(rec.pid, rec.stopped);
        } else {
          // Committed: the source copy ends (once the destination holds every page, or when it cannot),
          // its pages kept in this host's store first.
          const m = this.#frozen.get(key);
          if (m) await m.keep(this.store).catch((e: Error) => log.warn({ op: 'job-move', job: rec.id, err: e.message }, 'could not keep the job\'s pages here'));
          await f.release();
          await this.jobs.signalJob(rec.pid, 'SIGKILL');
          await dropNetworkLocks(dir);
        }
      }
      if (takenBack) {
        log.error({ op: 'job-move', job: rec.id, to, outcome: 'taken-back' }, 'the destination lost the job before every page arrived: it runs here again, from its frozen copy');
        throw new PjError(codes.MIGRATION_ABORTED, `job ${rec.id} was moved to ${to}, which lost it before every page arrived: it runs on ${self} again, from its frozen copy`);
      }
      log.info({ op: 'job-move', why: reason, outcome: 'moved', ...result, pid: newPid }, 'job moved');
      return result;
    } catch (e) {
      (e as { phase?: string }).phase ??= p.phase;
      throw e;
    } finally {
      this.jobs.busy.delete(rec.id);
      this.#progress.delete(rec.id);
      this.#frozen.delete(key);
      rmSync(dir, { recursive: true, force: true });
    }
  }

  #allLocal(to: string, key: string, timeoutMs: number): Promise<Landed> {
    return this.mesh.call(to, 'job', { op: 'all-local', key }, timeoutMs) as Promise<Landed>;
  }

  /**
   * After the destination stopped answering during the lazy phase: whether it still got every page
   * ('landed'), or lost the job ('lost': its manager restarted without the pages' pager, or its host
   * has held no lease in etcd for HOST_GONE_MS: gone). 'unknown' after LOST_WAIT_MS of neither (a
   * partition: the frozen copy is not resumed while the destination's may live).
   */
  async #confirmedAfterAll(id: string, to: string, key: string): Promise<'landed' | 'lost' | 'unknown'> {
    const until = Date.now() + LOST_WAIT_MS;
    let downSince: number | undefined;
    while (Date.now() < until) {
      try {
        const status = (await this.mesh.call(to, 'job', { op: 'move-status', key }, STATUS_TIMEOUT_MS)) as MoveInStatus;
        if (status === 'lost') return 'lost';
        if (status === 'landed' || status === 'done') return 'landed';
        await this.#allLocal(to, key, Math.max(1000, until - Date.now()));
        return 'landed';
      } catch (e) {
        this.jobs.log.warn({ op: 'job-move', job: id, to, err: (e as Error).message }, 'the destination does not say whether it has every page yet');
        // Gone for good, not merely stopped or restarting for a while: its lease stays away.
        const up = await this.hostUp(to).catch(() => undefined);
        downSince = up === false ? downSince ?? Date.now() : undefined;
        if (downSince !== undefined && Date.now() - downSince >= HOST_GONE_MS) return 'lost';
      }
      await new Promise((r) => setTimeout(r, STATUS_RETRY_MS));
    }
    return 'unknown';
  }

  /** Puts the job back in the table as the copy frozen here, if the table still places it at `to`. */
  async #takeBack(rec: JobRecord, to: string, newPid: number): Promise<boolean> {
    for (;;) {
      const now = await this.jobs.table.get<JobRecord>(rec.id).catch(() => undefined);
      if (!now || now.value.host !== to || now.value.pid !== newPid) return false;
      if (await this.jobs.table.compareAndSwap(rec.id, now.modRevision, takenBack(rec, to)).catch(() => false)) return true;
    }
  }

  /** stop-copy: CRIU writes every page into the images and exits, leaving the job stopped. */
  #freeze(rec: JobRecord, dir: string, mounts: string[]): Frozen {
    return { dumped: dump(rec.pid, dir, mounts), release: async () => {} };
  }

  /** The pre-copy rounds into the destination's store, while the job runs. */
  #precopy(rec: JobRecord, to: string, key: string, p: { bytesSent: number }): Promise<PrecopyResult> {
    return precopy(async () => [...(await this.jobs.procs.run('jobTasks', rec.pid)).values()], {
      missing: async (hashes) => (await this.mesh.call(to, 'job', { op: 'have', key, hashes })) as number[],
      put: async (hashes, data) => { await this.mesh.call(to, 'job', { op: 'put-pages', key, hashes }, TRANSFER_IDLE_MS, data); },
    }, (n) => (p.bytesSent += n));
  }

  /**
   * Lazy modes: CRIU writes the images but the pages and keeps the job frozen, its memory in place;
   * a SIGSTOP queued on every task keeps it stopped whichever way CRIU ends. Destinations read the
   * memory through this host (`pages`), not through CRIU's page server, which is only closed at the end.
   */
  async #freezeLazy(rec: JobRecord, dir: string, key: string, mounts: string[]): Promise<Frozen> {
    const port = await freePort();
    const d = dumpLazy(rec.pid, dir, port, mounts);
    d.done.catch(() => {}); // a failure shows in `ready`, or does not matter once the pages are moved
    let ready = false;
    const dumped = d.ready.then(async () => {
      ready = true;
      await this.jobs.signalJob(rec.pid, 'SIGSTOP');
      this.#frozen.set(key, new FrozenMemory(await this.jobs.procs.run('jobTasks', rec.pid), dir));
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
  async pages(a: { key: string; id: number; addrs: Buffer }): Promise<Buffer> {
    return (await this.#frozenOf(a.key)).read(a.id, a.addrs);
  }

  /** Lazy modes: the frozen job's manifest (its pages' hashes). */
  async manifest(key: string): Promise<TaskManifest[]> {
    return (await this.#frozenOf(key)).manifest();
  }

  /** A move's frozen memory; after a restart of this manager, the job's stopped copy found here (pages by address only). */
  async #frozenOf(key: string): Promise<FrozenMemory> {
    let m = this.#frozen.get(key);
    if (!m) {
      const id = key.split('-')[0];
      const copy = (await this.jobs.procs.run('localJobInits', this.jobs.mount)).find((c) => c.dir.endsWith(`/${id}`) && /^[Tt]$/.test(stateOf(c.pid) ?? ''));
      if (!copy) throw new PjError(codes.PAGES_LOST, `no frozen job for move ${key} on ${this.jobs.self}`);
      const tasks = await this.jobs.procs.run('jobTasks', copy.pid);
      m = this.#frozen.get(key); // found meanwhile by another request
      if (!m) {
        this.jobs.log.warn({ op: 'job-move', job: id, pid: copy.pid }, 'serving the pages of a copy frozen before this manager started');
        this.#frozen.set(key, (m = new FrozenMemory(tasks)));
      }
    }
    return m;
  }

  /** Which of these hashes this host's store lacks (positions): a destination asks which pages only its source holds. */
  storeLacks(hashes: Buffer): number[] {
    return this.store.missing(hashes);
  }

  /** Pages of this host's store by hash, for a destination whose source is gone; all or none. */
  storedPages(hashes: Buffer): Buffer {
    const r = this.store.getMany(hashes);
    if (r.missing.length) throw new PjError(codes.PAGES_LOST, `${r.missing.length} of ${hashes.length / HASH_BYTES} pages are not in ${this.jobs.self}'s store`);
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

}


function abort(e: unknown, rec: JobRecord): PjError {
  if (e instanceof PjError && (e.code === codes.NOT_MIGRATABLE || e.code === codes.JOB_BUSY)) return e;
  const stays = `job ${rec.id} stays on ${rec.host}`;
  if (e instanceof PjError && e.code === codes.MIGRATION_ABORTED && e.message.startsWith(stays)) return e;
  return new PjError(codes.MIGRATION_ABORTED, `${stays}: ${(e as Error).message}`, { cause: e });
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
