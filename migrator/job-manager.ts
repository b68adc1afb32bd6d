// The jobs of this host: starting them (pj-init in a PID namespace of its own),
// their usage, signals, output, and the reconciliation that keeps exactly one
// copy of each: every second, the copies /proc shows here are matched against
// the job table. A stopped copy the table places elsewhere is ended; a stopped
// copy the table places here (a move that never finished) is resumed; a job
// whose first process is gone is marked exited with its status.
import { spawn } from 'node:child_process';
import { chownSync, mkdirSync, statfsSync, writeFileSync } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { PjError, codes } from '../common/errors.js';
import { inJobPrivateDir } from '../common/job-private-dirs.js';
import type { Log } from '../common/log.js';
import type { JobTable, Versioned } from '../manager/cluster-state.js';
import { initBinary } from './init-binary.js';
import { dropJobNetworkLocks } from './criu.js';
import { alive, signalAll, startTime, stateOf, type JobUsage } from './job-processes.js';
import type { ProcReader } from './proc-reader.js';
import { JOBS_EXPORT, jobDir, newJobId, takenBack, type JobRecord } from './jobs.js';
import { POLICIES, type Policy } from './policy.js';
import type { JobUser } from './job-access.js';

export interface RunRequest {
  name?: string; cmd: string[]; cwd: string; env: Record<string, string>; publish?: JobRecord['publish']; policy?: Policy; budget?: number;
  /** Who the command runs as (set by the control socket from its caller); absent: root. */
  user?: JobUser;
}

/**
 * A job's network, as the net-layer gives it (the manager wires it in): the socket its init relays
 * through, and the detach before a dump and reattach once it runs again.
 */
export interface JobNetwork {
  socketPath: string;
  detach(initPid: number): Promise<void>;
  reattach(initPid: number): void;
}

const RECONCILE_MS = 1000;
const STOPS = new Set<string>(['SIGSTOP', 'SIGTSTP', 'SIGTTIN', 'SIGTTOU']);
/** Below this much free space in its jobs folder, a host starts no job and says its jobs' output is being lost. */
const OUTPUT_MIN_FREE = 1 << 20;
const LOG_CHUNK = 1 << 20;

export class JobManager {
  /** Jobs a move is working on here (as source or destination): reconciliation leaves them alone. */
  readonly busy = new Set<string>();
  /** Of those, jobs that run here already while their pages arrive: they take signals, not another move. */
  readonly filling = new Set<string>();
  /** Why jobs ended here when their first process could not record it (SIGKILL, pages lost). */
  #endings = new Map<string, string>();
  #timer: NodeJS.Timeout | undefined;
  #reconciling = false;
  /** The inits of jobs a manager before this one left running here, once this one asked them to attach to it. */
  #attached = new Set<number>();
  /** When this manager started (clock ticks since boot, as a process's start time): inits older than it were left by another. */
  readonly #startedAt = startTime(process.pid) ?? 0;
  /**
   * Whether the host a job moved to still fetches pages from a stopped copy here (a lazy move whose
   * source's manager restarted): such a copy is kept until it does not. Set by the migrator.
   */
  stillFetching: (rec: JobRecord) => Promise<boolean> = async () => false;
  /** Whether the host the table places the job on lost it in a lazy move (wired by the migrator). */
  lostThere: (rec: JobRecord) => Promise<boolean> = async () => false;
  /** Jobs get a network namespace of their own, relayed by the net-layer, when it is there. */
  net: JobNetwork | undefined;
  /** Gives up the POSIX locks these threads hold on /pj files (the fs-layer's; wired by the manager). */
  dropFileLocks: (tids: number[]) => Promise<unknown> = async () => {};

  constructor(
    readonly self: string,
    /** Where /pj is mounted. */
    readonly mount: string,
    /** The real folder behind this host's jobs export. */
    readonly jobsPath: string,
    readonly table: JobTable,
    readonly log: Log,
    /** Reads job processes' /proc off the event loop. */
    readonly procs: ProcReader,
  ) {
    mkdirSync(jobsPath, { recursive: true });
  }

  start(): void {
    // Installed now too, so that a job moving here finds its pj-init at the path it was started from.
    try {
      initBinary();
    } catch (e) {
      this.log.error({ op: 'install-init', err: (e as Error).message }, 'cannot install pj-init: jobs cannot start or arrive here');
    }
    this.#timer = setInterval(() => void this.reconcile(), RECONCILE_MS);
    void this.reconcile();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  async run(req: RunRequest): Promise<JobRecord> {
    if (!Array.isArray(req.cmd) || req.cmd.length === 0 || !req.cmd.every((a) => typeof a === 'string')) throw new PjError(codes.USAGE, 'pj run needs a command');
    // Asynchronously: the directory may be under /pj, which this very process serves.
    if (typeof req.cwd !== 'string' || !(await isDirectory(req.cwd))) throw new PjError(codes.USAGE, `no directory ${req.cwd} on ${this.self} (--cwd)`);
    const own = inJobPrivateDir(req.cwd);
    if (own) throw new PjError(codes.USAGE, `a job has a ${own} of its own, so ${req.cwd} is not there for it: give --cwd a folder outside ${own}`);
    const port = (n: unknown) => Number.isInteger(n) && (n as number) > 0 && (n as number) < 65536;
    if (req.publish !== undefined && !(Array.isArray(req.publish) && req.publish.every((p) => port(p?.port) && port(p?.jobPort)))) throw new PjError(codes.USAGE, 'publish: want [{ port, jobPort, everywhere }]');
    checkPolicy(req.policy, req.budget);
    const low = req.user && req.publish?.find((p) => p.port < 1024);
    if (low) throw new PjError(codes.PERMISSION, `only root may publish ports below 1024 (${low.port}), as only root may listen on them`);
    const full = this.#outputFull();
    if (full) throw new PjError(codes.JOB_START, `no room for a job's output on ${this.self}: ${full}`);
    let init: string;
    try {
      init = initBinary();
    } catch (e) {
      throw new PjError(codes.JOB_START, `cannot install pj-init: ${(e as Error).message}`);
    }
    const id = newJobId();
    const folder = join(this.jobsPath, id);
    mkdirSync(folder);
    if (req.user) {
      // The job's folder and output are its user's.
      for (const f of ['stdout', 'stderr']) writeFileSync(join(folder, f), '', { flag: 'a', mode: 0o644 });
      for (const f of ['', 'stdout', 'stderr']) chownSync(join(folder, f), req.user.uid, req.user.gid);
    }
    const dir = jobDir(this.mount, this.self, id);
    const pid = await launch(init, dir, req, this.net?.socketPath);
    const rec: JobRecord = {
      id, name: req.name || basename(req.cmd[0]), cmd: req.cmd, cwd: req.cwd, origin: this.self, dir,
      host: this.self, pid, pidStart: startTime(pid) ?? 0, state: 'running', moves: 0, startedAt: new Date().toISOString(),
      ...(req.publish?.length ? { publish: req.publish } : {}),
      ...(req.policy ? { policy: req.policy } : {}), ...(req.budget != null ? { budget: req.budget } : {}),
      ...(req.user ? { uid: req.user.uid, gid: req.user.gid, groups: req.user.groups } : {}),
    };
    if (!(await this.table.create(id, rec))) {
      await this.signalJob(pid, 'SIGKILL');
      throw new PjError(codes.JOB_START, `job id ${id} is taken`);
    }
    this.log.info({ op: 'job-run', job: id, pid, cmd: req.cmd, uid: req.user?.uid ?? 0 }, 'job started');
    return rec;
  }

  /** The record of a job by id, unique id prefix or unique name. */
  async find(ref: string): Promise<Versioned<JobRecord> & { id: string }> {
    const all = await this.table.list<JobRecord>();
    const exact = all.find((j) => j.id === ref);
    if (exact) return exact;
    const matches = all.filter((j) => j.id.startsWith(ref) || j.value.name === ref);
    if (matches.length === 1) return matches[0];
    if (matches.length > 1) throw new PjError(codes.USAGE, `'${ref}' names ${matches.length} jobs (${matches.map((j) => j.id).join(', ')}): give the id`);
    throw new PjError(codes.NO_SUCH_JOB, `no job '${ref}' (pj ps lists them)`);
  }

  /** Forgets a job that has ended (its record; its files stay under its jobs folder). */
  async remove(ref: string): Promise<JobRecord> {
    const j = await this.find(ref);
    if (j.value.state !== 'exited') throw new PjError(codes.JOB_BUSY, `job ${j.id} is still running (pj kill it first)`);
    if (!(await this.table.compareAndDelete(j.id, j.modRevision))) throw new PjError(codes.JOB_BUSY, `job ${j.id} changed meanwhile; try again`);
    return j.value;
  }

  /** Changes how the manager places a job (pj policy). */
  async setPolicy(ref: string, policy: Policy | undefined, budget: number | undefined): Promise<JobRecord> {
    checkPolicy(policy, budget);
    const { id } = await this.find(ref);
    const next = await this.#change(id, (r) => ({ ...r, ...(policy ? { policy } : {}), ...(budget != null ? { budget } : {}) }));
    this.log.info({ op: 'job-policy', job: id, policy: next.policy, budget: next.budget }, 'policy changed');
    return next;
  }

  /** Changes a job's record by compare-and-swap, reading it again while others change it. */
  async #change(id: string, change: (r: JobRecord) => JobRecord): Promise<JobRecord> {
    for (let i = 0; i < 10; i++) {
      const j = await this.table.get<JobRecord>(id);
      if (!j) throw new PjError(codes.NO_SUCH_JOB, `no job ${id}`);
      const next = change(j.value);
      if (await this.table.compareAndSwap(id, j.modRevision, next)) return next;
    }
    throw new PjError(codes.JOB_BUSY, `job ${id} keeps changing; try again`);
  }

  /** Usage of the jobs running here. */
  async usage(ids: string[], records: JobRecord[]): Promise<Record<string, JobUsage>> {
    const out: Record<string, JobUsage> = {};
    for (const r of records) {
      if (ids.includes(r.id) && r.host === this.self && alive(r.pid, r.pidStart)) out[r.id] = await this.procs.run('jobUsage', r.pid);
    }
    return out;
  }

  /**
   * Sends `signal` to every process of the job whose first process is `initPid` (`withInit`: that one
   * too); when they cannot be listed (a /proc read that does not finish), to its first process at
   * least, and says so.
   */
  async signalJob(initPid: number, signal: NodeJS.Signals, withInit = true): Promise<void> {
    const pids = await this.procs.run('jobPids', initPid).catch((e: Error) => {
      this.log.error({ op: 'job-signal', pid: initPid, signal, err: e.message }, 'could not list the job\'s processes: only its first one is signalled');
      return [initPid];
    });
    signalAll(withInit ? pids : pids.filter((p) => p !== initPid), signal);
  }

  /** Ends a job running here for a reason its first process cannot record (pj ps shows it). */
  async end(id: string, pid: number, reason: string): Promise<void> {
    this.#endings.set(id, reason);
    await this.signalJob(pid, 'SIGKILL');
  }

  /**
   * A signal to a job running here: pj-init passes it on to the program (SIGKILL ends the whole job).
   * A stop (STOP, TSTP, TTIN, TTOU) stops every process but the first (which relays the job's
   * connections) and is kept in the job's record, so that neither reconciliation nor a move undoes
   * it; CONT ends it.
   */
  async kill(rec: JobRecord, signal: NodeJS.Signals): Promise<void> {
    if (rec.host !== this.self || !alive(rec.pid, rec.pidStart)) throw new PjError(codes.NO_SUCH_JOB, `job ${rec.id} is not running on ${this.self}`);
    if (this.busy.has(rec.id) && !this.filling.has(rec.id)) throw new PjError(codes.JOB_BUSY, `job ${rec.id} is moving; signal it once it has`);
    if (signal === 'SIGKILL') this.#endings.set(rec.id, 'signal 9');
    const stop = STOPS.has(signal);
    if (stop || signal === 'SIGCONT') {
      await this.#change(rec.id, ({ stopped: _, ...rest }) => (stop ? { ...rest, stopped: true } : rest));
      return this.signalJob(rec.pid, stop ? 'SIGSTOP' : 'SIGCONT', !stop);
    }
    process.kill(rec.pid, signal);
  }

  /**
   * Lets a copy of a job that a move stopped run on here: its processes continue (only the first,
   * when the job itself was stopped by `pj kill -s STOP`) and its init takes its links from this host.
   */
  async resumeHere(initPid: number, userStopped = false): Promise<void> {
    if (userStopped) signalAll([initPid], 'SIGCONT');
    else await this.signalJob(initPid, 'SIGCONT');
    this.net?.reattach(initPid);
  }

  /**
   * A move's CRIU whose manager died still holds the copy (ptrace stop, which SIGCONT does not end:
   * a lazy dump serves pages until told to stop) with its network lock on: it is ended and the lock
   * dropped. No move of this job runs now (reconciliation skips busy jobs), so it is a dead one's.
   */
  async #releaseFromCriu(id: string, initPid: number): Promise<void> {
    const tracer = await this.procs.run('tracerOf', initPid);
    if (!tracer || !/\bcriu (dump|pre-dump)\b/.test(await this.procs.run('commandLine', tracer))) return;
    this.log.warn({ op: 'job-reconcile', job: id, pid: initPid, criu: tracer }, 'ending the CRIU of a move whose manager died: it still holds the job');
    try {
      process.kill(tracer, 'SIGKILL');
    } catch { /* gone meanwhile */ }
    await dropJobNetworkLocks(initPid);
  }

  /**
   * A move's frozen copy here whose destination lost the job (both managers died during the lazy
   * phase, so the move's own take-back died with this one): the job runs here again from it.
   */
  async #takeBack(id: string, pid: number, lostAt: JobRecord): Promise<void> {
    const now = await this.table.get<JobRecord>(id);
    if (!now || now.value.host !== lostAt.host || now.value.pid !== lostAt.pid) return;
    const back = takenBack(now.value, lostAt.host, { host: this.self, pid, pidStart: startTime(pid) ?? 0 });
    if (!(await this.table.compareAndSwap(id, now.modRevision, back))) return;
    this.log.error({ op: 'job-reconcile', job: id, pid, from: lostAt.host }, 'took the job back from the frozen copy here: its destination lost it in a move whose manager died');
    await this.#releaseFromCriu(id, pid);
    await this.resumeHere(pid, back.stopped);
  }

  /** The job whose PID namespace is `ns`, if it runs here. */
  async byNamespace(ns: number, records: JobRecord[]): Promise<JobRecord | undefined> {
    for (const r of records) {
      if (r.host === this.self && alive(r.pid, r.pidStart) && (await this.procs.run('namespaceOf', r.pid, 'pid')) === ns) return r;
    }
    return undefined;
  }

  /** Output of a job from `offset` (its files are under /pj: read without blocking the loop that serves /pj). */
  async output(rec: JobRecord, stream: 'stdout' | 'stderr', offset: number): Promise<{ data: string; next: number }> {
    let f;
    try {
      f = await open(`${rec.dir}/${stream}`, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { data: '', next: offset };
      throw e;
    }
    try {
      const buf = Buffer.alloc(LOG_CHUNK);
      const { bytesRead } = await f.read(buf, 0, LOG_CHUNK, offset);
      return { data: buf.subarray(0, bytesRead).toString('base64'), next: offset + bytesRead };
    } finally {
      await f.close();
    }
  }

  /** Why the jobs folder here cannot take output (nearly no space left), or undefined. */
  #outputFull(): string | undefined {
    const s = statfsSync(this.jobsPath);
    const free = s.bavail * s.bsize;
    return free < OUTPUT_MIN_FREE ? `${this.jobsPath} has ${free} bytes free` : undefined;
  }

  /** Marks (or clears) on the records of the jobs whose files are here whether their output can be written; whether it changed one. */
  async #checkOutput(records: Array<Versioned<JobRecord> & { id: string }>): Promise<boolean> {
    const full = this.#outputFull();
    let changed = false;
    for (const j of records) {
      const r = j.value;
      if (r.origin !== this.self || r.state !== 'running' || r.outputError === full) continue;
      const { outputError: _, ...rest } = r;
      if (!(await this.table.compareAndSwap(j.id, j.modRevision, full ? { ...rest, outputError: full } : rest))) continue;
      changed = true;
      if (full) this.log.error({ op: 'job-output', job: r.id, err: full }, 'the job\'s output cannot be written: its folder is full');
      else this.log.info({ op: 'job-output', job: r.id }, 'the job\'s output can be written again');
    }
    return changed;
  }

  async reconcile(): Promise<void> {
    if (this.#reconciling) return;
    this.#reconciling = true;
    try {
      let listed = await this.table.list<JobRecord>();
      if (await this.#checkOutput(listed)) listed = await this.table.list<JobRecord>();
      const records = new Map(listed.map((j) => [j.id, j]));
      const inits = await this.procs.run('localJobInits', this.mount);
      this.#attached = new Set(inits.map((i) => i.pid).filter((pid) => this.#attached.has(pid)));
      for (const { pid, dir } of inits) {
        const id = basename(dir);
        if (this.busy.has(id) || !records.get(id) || !dir.endsWith(`/${JOBS_EXPORT}/${id}`)) continue;
        const state = stateOf(pid);
        const stopped = state === 'T' || state === 't'; // 't': held by a CRIU whose manager is gone
        if (!stopped && records.get(id)!.value.host === this.self) {
          // A job a dead manager left running here: its init asks this one for links (and takes inbound ones) again.
          // Only those: a new init ignores the signal only once its relay runs.
          if (!this.#attached.has(pid) && (startTime(pid) ?? Infinity) < this.#startedAt) {
            this.#attached.add(pid);
            this.net?.reattach(pid);
          }
          continue;
        }
        // Acting on a copy: on what the table says now (a move may have committed since the list was read).
        const rec = (await this.table.get<JobRecord>(id))?.value;
        if (!rec || this.busy.has(id)) continue;
        const mine = rec.host === this.self && rec.pid === pid;
        if (mine && stopped) {
          this.log.warn({ op: 'job-reconcile', job: id, pid }, 'resuming a copy a move left stopped: the job table says it runs here');
          await this.#releaseFromCriu(id, pid);
          await this.resumeHere(pid, rec.stopped);
        } else if (!mine && stopped && (await this.stillFetching(rec))) {
          continue;
        } else if (!mine && stopped && (await this.lostThere(rec))) {
          await this.#takeBack(id, pid, rec);
        } else if (!mine && stopped) {
          this.log.warn({ op: 'job-reconcile', job: id, pid, host: rec.host }, 'ending a stopped copy: the job table says it runs elsewhere');
          await this.signalJob(pid, 'SIGKILL');
        } else if (!mine && rec.state === 'running') {
          this.log.error({ op: 'job-reconcile', job: id, pid, host: rec.host }, 'a running copy the job table places elsewhere: left alone');
        }
      }
      for (const j of records.values()) {
        const r = j.value;
        if (r.host !== this.self || r.state !== 'running' || this.busy.has(r.id) || alive(r.pid, r.pidStart)) continue;
        const lost = r.outputError ? ` (its status could not be written: ${r.outputError})` : '';
        const exit = (await readFile(`${r.dir}/status`, 'utf8').catch(() => this.#endings.get(r.id) ?? `unknown${lost}`)).trim();
        this.#endings.delete(r.id);
        if (await this.table.compareAndSwap(r.id, j.modRevision, { ...r, state: 'exited', exit })) {
          this.log.info({ op: 'job-exit', job: r.id, exit }, 'job ended');
        }
      }
    } catch (e) {
      this.log.warn({ op: 'job-reconcile', err: (e as Error).message }, 'reconciliation failed; trying again');
    } finally {
      this.#reconciling = false;
    }
  }
}

function checkPolicy(policy: unknown, budget: unknown): void {
  if (policy != null && !POLICIES.includes(policy as Policy)) throw new PjError(codes.USAGE, `the policy must be one of ${POLICIES.join(', ')}`);
  if (budget != null && !(typeof budget === 'number' && budget >= 0 && Number.isFinite(budget))) throw new PjError(codes.USAGE, 'the budget must be a number of bytes per second, 0 or more');
}

export const isDirectory = (path: string): Promise<boolean> => stat(path).then((s) => s.isDirectory(), () => false);

/** Starts pj-init, which prints the job's first pid and leaves it running in its own PID namespace. */
function launch(init: string, dir: string, req: RunRequest, netSocket: string | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const user = req.user ? ['--user', [req.user.uid, req.user.gid, ...(req.user.groups.length ? [req.user.groups.join(',')] : [])].join(':')] : [];
    const p = spawn(init, [dir, ...(netSocket ? ['--net', netSocket] : []), ...user, '--', ...req.cmd], { cwd: req.cwd, env: req.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('error', (e) => reject(new PjError(codes.JOB_START, `cannot start pj-init: ${e.message}`)));
    p.on('close', (code) => {
      const pid = Number(out.trim());
      if (code === 0 && pid > 0) resolve(pid);
      else reject(new PjError(codes.JOB_START, `pj-init failed: ${err.trim() || `exit ${code}`}`));
    });
  });
}
