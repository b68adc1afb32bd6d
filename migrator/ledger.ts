// The traffic ledger: bytes and operations each job moved to or from each
// target host, per layer, in total and per second over a sliding window
// (quarter-second buckets over the last 10 s). The layers record into it; the
// migrator's policy reads it.
// A job is known here by its PID namespace (jobs get one each; processes of
// the host itself share the host's), named by the command first seen in it and,
// once the migrator names it, by its job id: a job that moves gets a new PID
// namespace on its new host, so each host's rows cover its stay there.
import { readFileSync } from 'node:fs';
import { namespaceOf } from '../common/process-ns.js';

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

  /** The job a process belongs to: its PID namespace ("pidns:<inode>"), cached briefly. */
  jobOf(pid: number): string {
    const now = Date.now();
    const hit = this.#pidCache.get(pid);
    if (hit && now - hit.at < PID_CACHE_MS) return hit.job;
    const ns = namespaceOf(pid, 'pid');
    const job = ns === undefined ? 'unknown' : `pidns:${ns}`;
    if (ns !== undefined && !this.#commands.has(job)) {
      try {
        this.#commands.set(job, readFileSync(`/proc/${pid}/comm`, 'utf8').trim());
      } catch { /* the process is gone already */ }
    }
    if (this.#pidCache.size > 10_000) this.#pidCache.clear();
    this.#pidCache.set(pid, { job, at: now });
    return job;
  }

  /** Gives a job key its job id (the migrator knows which namespace is which job). */
  name(job: string, id: string): void {
    this.#ids.set(job, id);
  }

  record(job: string, target: string, layer: string, ops: number, bytes: number): void {
    const key = `${job}\0${target}\0${layer}`;
    let c = this.#counters.get(key);
    if (!c) this.#counters.set(key, (c = { job, target, layer, ops: 0, bytes: 0, buckets: [] }));
    if (!this.#firstSeen.has(job)) this.#firstSeen.set(job, Date.now());
    c.ops += ops;
    c.bytes += bytes;
    const slot = Math.floor(Date.now() / BUCKET_MS);
    let b = c.buckets.at(-1);
    if (!b || b.at !== slot) {
      c.buckets.push((b = { at: slot, ops: 0, bytes: 0 }));
      while (c.buckets[0].at <= slot - (WINDOW_S * 1000) / BUCKET_MS) c.buckets.shift();
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
