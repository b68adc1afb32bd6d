// The traffic ledger: bytes and operations each job moved to or from each
// target host, per layer, in total and per second over a sliding window
// (quarter-second buckets over the last 10 s). The layers record into it; the
// migrator's policy reads it.
// A job is known here by its PID namespace (jobs get one each; processes of
// the host itself share the host's), named by the command first seen in it and,
// once the migrator names it, by its job id: a job that moves gets a new PID
// namespace on its new host, so each host's rows cover its stay there.
// Traffic is recorded by the pid that made it (recordCaller) and attributed to a
// job afterwards, off the event loop: a /pj caller's /proc can block the thread
// that must answer it (see proc-reader.ts).
import type { ProcReader } from './proc-reader.js';

export interface LedgerRow {
  job: string;
  /** The job's id, once the migrator has named the namespace. */
  id?: string;
  command: string;
  target: string;
  layer: string;
  ops: number;
  bytes: number;
  /** Over the last WINDOW_S seconds (or the job's time here, if shorter). */
  opsPerS: number;
  bytesPerS: number;
}

/** A job's traffic to one host, per second. */
export interface Rate { bytesPerS: number; opsPerS: number }

const WINDOW_S = 10;
const BUCKET_MS = 250;
const PID_CACHE_MS = 5000;

interface Counter { job: string; target: string; layer: string; ops: number; bytes: number; buckets: Array<{ at: number; ops: number; bytes: number }> }

export class TrafficLedger {
  #counters = new Map<string, Counter>();
  #commands = new Map<string, string>();
  #ids = new Map<string, string>();
  /** When each job key was first recorded here: rates of a job younger than the window are over its age. */
  #firstSeen = new Map<string, number>();
  #pidCache = new Map<number, { job: string; at: number }>();
  /** Traffic of processes whose job is being learned, by pid. */
  #unattributed = new Map<number, Array<{ target: string; layer: string; ops: number; bytes: number; at: number }>>();

  constructor(private readonly procs: ProcReader) {}

  /** The job a process belongs to: its PID namespace ("pidns:<inode>"), learned off the event loop. */
  async jobOf(pid: number): Promise<string> {
    const hit = this.#pidCache.get(pid);
    if (hit && Date.now() - hit.at < PID_CACHE_MS) return hit.job;
    const c = await this.procs.run('caller', pid).catch(() => ({ ns: undefined, comm: undefined }));
    const job = c.ns === undefined ? 'unknown' : `pidns:${c.ns}`;
    if (c.comm && !this.#commands.has(job)) this.#commands.set(job, c.comm);
    if (this.#pidCache.size > 10_000) this.#pidCache.clear();
    this.#pidCache.set(pid, { job, at: Date.now() });
    return job;
  }

  /** Records traffic that the process `pid` made; it counts for that process's job once it is known. */
  recordCaller(pid: number, target: string, layer: string, ops: number, bytes: number): void {
    const hit = this.#pidCache.get(pid);
    if (hit && Date.now() - hit.at < PID_CACHE_MS) return this.record(hit.job, target, layer, ops, bytes);
    const waiting = this.#unattributed.get(pid);
    const entry = { target, layer, ops, bytes, at: Date.now() };
    if (waiting) return void waiting.push(entry);
    this.#unattributed.set(pid, [entry]);
    void this.jobOf(pid).then((job) => {
      for (const w of this.#unattributed.get(pid) ?? []) this.record(job, w.target, w.layer, w.ops, w.bytes, w.at);
      this.#unattributed.delete(pid);
    });
  }

  /** Gives a job key its job id (the migrator knows which namespace is which job). */
  name(job: string, id: string): void {
    this.#ids.set(job, id);
  }

  /** `at`: when the traffic happened (it may be attributed a little later). */
  record(job: string, target: string, layer: string, ops: number, bytes: number, at = Date.now()): void {
    const key = `${job}\0${target}\0${layer}`;
    let c = this.#counters.get(key);
    if (!c) this.#counters.set(key, (c = { job, target, layer, ops: 0, bytes: 0, buckets: [] }));
    if (!this.#firstSeen.has(job)) this.#firstSeen.set(job, at);
    c.ops += ops;
    c.bytes += bytes;
    const slot = Math.floor(at / BUCKET_MS);
    let b = c.buckets.findLast((x) => x.at <= slot);
    if (!b || b.at !== slot) {
      b = { at: slot, ops: 0, bytes: 0 };
      c.buckets.splice(c.buckets.findLastIndex((x) => x.at < slot) + 1, 0, b);
      while (c.buckets[0].at <= Math.floor(Date.now() / BUCKET_MS) - (WINDOW_S * 1000) / BUCKET_MS) c.buckets.shift();
    }
    b.ops += ops;
    b.bytes += bytes;
  }

  /** A counter's rate over the last `windowS` seconds, or over the job's time here when that is shorter. */
  #rate(c: Counter, windowS: number, now: number): Rate {
    const spanMs = Math.max(BUCKET_MS, Math.min(windowS * 1000, now - (this.#firstSeen.get(c.job) ?? now)));
    // From the bucket the window starts in (a job's first bucket starts before the job was first seen).
    const since = Math.floor((now - spanMs) / BUCKET_MS);
    let ops = 0;
    let bytes = 0;
    for (const b of c.buckets) if (b.at >= since) { ops += b.ops; bytes += b.bytes; }
    return { bytesPerS: (bytes * 1000) / spanMs, opsPerS: (ops * 1000) / spanMs };
  }

  /** One job's traffic per target host and layer over the last `windowS` seconds. */
  rates(job: string, windowS: number): Array<Rate & { target: string; layer: string }> {
    const now = Date.now();
    return [...this.#counters.values()].filter((c) => c.job === job).map((c) => ({ target: c.target, layer: c.layer, ...this.#rate(c, windowS, now) }));
  }

  /** A job's total bytes in the given layers, to every target (since it was first seen). */
  bytes(job: string, layers: string[]): number {
    let bytes = 0;
    for (const c of this.#counters.values()) if (c.job === job && layers.includes(c.layer)) bytes += c.bytes;
    return bytes;
  }

  snapshot(): LedgerRow[] {
    const now = Date.now();
    return [...this.#counters.values()].map((c) => ({
      job: c.job, ...(this.#ids.has(c.job) ? { id: this.#ids.get(c.job) } : {}), command: this.#commands.get(c.job) ?? '?',
      target: c.target, layer: c.layer, ops: c.ops, bytes: c.bytes, ...this.#rate(c, WINDOW_S, now),
    })).sort((a, b) => b.bytes - a.bytes);
  }
}
