// Moving a job, stop-and-copy: the source checks that it can move, dumps it
// with CRIU (left stopped), streams the images to the destination, which
// restores them (left stopped too); the source then commits the new location
// in the job table by compare-and-swap, the destination resumes its copy and
// the source ends its own. Before the commit, any failure resumes the source
// and ends the destination's copy; after it, the destination's copy is the job
// (reconciliation resumes it if the resume message is lost). Exactly one copy runs.
import { closeSync, mkdirSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { PjError, codes } from '../common/errors.js';
import { crashPoint, faultActive } from '../common/fault.js';
import type { Mesh } from '../manager/mesh/mesh.js';
import { CriuError, dropNetworkLocks, dump, restore } from './criu.js';
import { imageStream, receiveImages } from './image-transfer.js';
import { isDirectory, type JobManager } from './job-manager.js';
import { alive, jobPids, signalAll, startTime } from './job-processes.js';
import type { JobRecord } from './jobs.js';
import { differingSystemFiles, inspectJob, type SystemFile } from './migratable.js';

export interface MoveResult {
  job: string; from: string; to: string; mode: 'stop-and-copy';
  downtime_ms: number; dump_ms: number; transfer_ms: number; restore_ms: number; bytes_sent: number;
  /** Set instead of the figures when the source's manager went away after committing. */
  note?: string;
}
export interface MoveProgress { phase: string; bytesSent: number; elapsedMs: number }

/** A transfer that makes no progress for this long (a cut link) is given up. */
const TRANSFER_IDLE_MS = 15_000;
const RESTORE_TIMEOUT_MS = 60_000;
/** How long a destination keeps a move's state without hearing from the source; once restored, the commit is quick. */
const INCOMING_IDLE_MS = 60_000;
const RESTORED_IDLE_MS = 3_000;

/** A move into this host: `revision` is the job record's, which the source's commit is conditioned on. */
interface Incoming { id: string; from: string; dir: string; revision: string; pid?: number; timer?: NodeJS.Timeout }

export class Migrator {
  #progress = new Map<string, MoveProgress & { started: number }>();
  #incoming = new Map<string, Incoming>();

  constructor(private readonly jobs: JobManager, private readonly mesh: Mesh, private readonly workDir: string) {}

  progress(id: string): MoveProgress | undefined {
    const p = this.#progress.get(id);
    return p && { phase: p.phase, bytesSent: p.bytesSent, elapsedMs: Date.now() - p.started };
  }

  /** The source's side of a move. The job must run here. */
  async move(ref: string, to: string): Promise<MoveResult> {
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
    const p = { phase: 'check', bytesSent: 0, elapsedMs: 0, started: Date.now() };
    this.#progress.set(rec.id, p);
    try {
      const found = await inspectJob(rec.pid, this.jobs.mount);
      if (found.offenders.length) {
        throw new PjError(codes.NOT_MIGRATABLE, `job ${rec.id} cannot move: ${found.offenders.map((o) => `pid ${o.pid} fd ${o.fd} ${o.path} (${o.why})`).join('; ')}`);
      }
      await this.mesh.call(to, 'job', { op: 'prepare', id: rec.id, key, revision: j.modRevision, systemFiles: found.systemFiles, cwd: rec.cwd }).catch((e) => { throw abort(e, rec); });
      p.phase = 'dump';
      mkdirSync(dir, { recursive: true });
      const frozen = Date.now();
      // The images stream to the destination while CRIU writes them.
      const dumped = dump(rec.pid, dir);
      const sending = this.mesh.upload(to, 'job-images', { key }, imageStream(dir, dumped, p), TRANSFER_IDLE_MS);
      sending.catch(() => {}); // observed below, once the dump is done
      try {
        await dumped;
      } catch (e) {
        await dropNetworkLocks(dir);
        await this.mesh.call(to, 'job', { op: 'abort', key }).catch(() => {});
        throw abort(e, rec);
      }
      const dumpedAt = Date.now();
      let restored = 0;
      let newPid = 0;
      try {
        p.phase = 'transfer';
        await sending;
        const sent = Date.now();
        p.phase = 'restore';
        const r = (await this.mesh.call(to, 'job', { op: 'restore', key }, RESTORE_TIMEOUT_MS)) as { pid: number; pidStart: number };
        restored = Date.now() - sent;
        newPid = r.pid;
        p.phase = 'commit';
        if (!(await this.#commit(j.id, j.modRevision, { ...rec, host: to, pid: r.pid, pidStart: r.pidStart, moves: rec.moves + 1 }))) {
          throw new PjError(codes.MIGRATION_ABORTED, 'the job table changed during the move');
        }
        crashPoint('source-after-commit');
        p.phase = 'resume';
        await this.mesh.call(to, 'job', { op: 'resume', key }).catch((e: Error) => {
          log.warn({ op: 'job-move', job: rec.id, to, err: e.message }, 'committed, but the resume message was lost: the destination resumes it when it reconciles');
        });
        const resumed = Date.now();
        signalAll(jobPids(rec.pid), 'SIGKILL');
        await dropNetworkLocks(dir);
        const result: MoveResult = {
          job: rec.id, from: self, to, mode: 'stop-and-copy', downtime_ms: resumed - frozen, dump_ms: dumpedAt - frozen,
          transfer_ms: sent - dumpedAt, restore_ms: restored, bytes_sent: p.bytesSent,
        };
        log.info({ op: 'job-move', ...result, pid: newPid }, 'job moved');
        return result;
      } catch (e) {
        // Not committed: the destination's copy goes, ours resumes.
        await this.mesh.call(to, 'job', { op: 'abort', key }).catch(() => {});
        signalAll(jobPids(rec.pid), 'SIGCONT');
        await dropNetworkLocks(dir);
        log.warn({ op: 'job-move', job: rec.id, to, phase: p.phase, err: (e as Error).message }, 'move aborted; the job resumed here');
        throw abort(e, rec);
      }
    } finally {
      this.jobs.busy.delete(rec.id);
      this.#progress.delete(rec.id);
      rmSync(dir, { recursive: true, force: true });
    }
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

  async prepare(a: { id: string; key: string; revision: string; systemFiles: SystemFile[]; cwd: string }, from: string): Promise<void> {
    const differ = differingSystemFiles(a.systemFiles);
    if (!(await isDirectory(a.cwd))) differ.push(`${a.cwd}: the job's working directory is missing`);
    if (differ.length) throw new PjError(codes.NOT_MIGRATABLE, `files the job maps differ on ${this.jobs.self}: ${differ.join('; ')}`);
    if (this.jobs.busy.has(a.id)) throw new PjError(codes.JOB_BUSY, `job ${a.id} is already moving here`);
    this.jobs.busy.add(a.id);
    this.#incoming.set(a.key, { id: a.id, from, revision: String(a.revision), dir: join(this.workDir, 'incoming', a.key) });
    this.#touch(a.key);
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
      inc.pid = await restore(inc.dir);
      this.#touch(key, RESTORED_IDLE_MS);
    } catch (e) {
      await dropNetworkLocks(inc.dir);
      throw e instanceof CriuError ? new PjError(codes.MIGRATION_ABORTED, `on ${this.jobs.self}: ${e.message}`) : e;
    }
    return { pid: inc.pid, pidStart: startTime(inc.pid) ?? 0 };
  }

  resume(key: string): void {
    const inc = this.#get(key);
    if (inc.pid) signalAll(jobPids(inc.pid), 'SIGCONT');
    this.#finish(key);
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
    clearTimeout(inc.timer);
    this.#incoming.delete(key);
    this.jobs.busy.delete(inc.id);
    rmSync(inc.dir, { recursive: true, force: true });
  }
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
