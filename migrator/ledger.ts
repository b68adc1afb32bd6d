// The traffic ledger: bytes and operations each job moved to or from each
// target host, per layer, in total and over the last 10 s (1 s buckets). The
// layers record into it; the migrator's policy reads it.
// A job is known here by its PID namespace (jobs get one each; processes of
// the host itself share the host's), named by the command first seen in it.
import { readFileSync } from 'node:fs';
import { namespaceOf } from '../common/process-ns.js';

export interface LedgerRow {
  job: string;
  command: string;
  target: string;
  layer: string;
  ops: number;
  bytes: number;
  /** Over the last WINDOW_S seconds. */
  opsPerS: number;
  bytesPerS: number;
}

const WINDOW_S = 10;
const PID_CACHE_MS = 5000;

interface Counter { ops: number; bytes: number; buckets: Array<{ at: number; ops: number; bytes: number }> }

export class TrafficLedger {
  #counters = new Map<string, Counter & { job: string; target: string; layer: string }>();
  #commands = new Map<string, string>();
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

  record(job: string, target: string, layer: string, ops: number, bytes: number): void {
    const key = `${job}\0${target}\0${layer}`;
    let c = this.#counters.get(key);
    if (!c) this.#counters.set(key, (c = { job, target, layer, ops: 0, bytes: 0, buckets: [] }));
    c.ops += ops;
    c.bytes += bytes;
    const second = Math.floor(Date.now() / 1000);
    let b = c.buckets.at(-1);
    if (!b || b.at !== second) {
      c.buckets.push((b = { at: second, ops: 0, bytes: 0 }));
      while (c.buckets[0].at <= second - WINDOW_S) c.buckets.shift();
    }
    b.ops += ops;
    b.bytes += bytes;
  }

  snapshot(): LedgerRow[] {
    const since = Math.floor(Date.now() / 1000) - WINDOW_S;
    return [...this.#counters.values()].map((c) => {
      const recent = c.buckets.filter((b) => b.at > since);
      return {
        job: c.job, command: this.#commands.get(c.job) ?? '?', target: c.target, layer: c.layer, ops: c.ops, bytes: c.bytes,
        opsPerS: recent.reduce((n, b) => n + b.ops, 0) / WINDOW_S,
        bytesPerS: recent.reduce((n, b) => n + b.bytes, 0) / WINDOW_S,
      };
    }).sort((a, b) => b.bytes - a.bytes);
  }
}
