// A job's local I/O, for the ledger. Much of what a job does here never passes
// a daemon: reads and writes of local /pj files go through kernel passthrough,
// pipes and local disks are the kernel's. The job's own processes' I/O
// counters (/proc/<pid>/io: bytes and read/write calls) see all of it; what
// the layers counted (its /pj requests and its connections) is taken away, and
// the rest is recorded as layer 'io' against this host. A job that reads its
// data locally thus weighs as much as one that reads it remotely, and does not
// leave for a host whose data it touches less. Bytes only: how many requests
// its calls would make remotely is not known (the kernel merges sequential
// reads: eight 128 KiB reads were one 1 MiB request here). The job's init is
// left out: it only relays the connections the net-layer counts already.
import type { TrafficLedger } from './ledger.js';

const COUNTED_LAYERS = ['fs', 'net'];

/**
 * A job's figures since its first sample here: the I/O its processes did, what the layers counted
 * then, and what was recorded as local. The layers count late (a job's init reports its
 * connections' bytes once a second): a sample may see I/O that the layers count only at the next, so
 * the local bytes are what the I/O exceeds the counts by over the whole stay, not sample by sample.
 */
interface Sample { io: Map<number, number>; ioTotal: number; countedAtStart: number; recorded: number }

export class LocalIo {
  #last = new Map<string, Sample>();

  constructor(private readonly self: string, private readonly ledger: TrafficLedger) {}

  /**
   * Records what the job (ledger key `job`) did here since the last sample; `io`: the I/O counters of
   * its processes but its first (job-processes.ts jobSample), by pid.
   */
  sample(job: string, io: Map<number, number>): void {
    const counted = this.ledger.bytes(job, COUNTED_LAYERS);
    const s = this.#last.get(job);
    if (!s) {
      this.#last.set(job, { io, ioTotal: 0, countedAtStart: counted, recorded: 0 });
      return;
    }
    // A process that started since counts from zero; one that ended takes its last figures with it.
    for (const [pid, now] of io) s.ioTotal += Math.max(0, now - (s.io.get(pid) ?? 0));
    s.io = io;
    const local = s.ioTotal - (counted - s.countedAtStart);
    if (local > s.recorded) {
      this.ledger.record(job, this.self, 'io', 0, local - s.recorded);
      s.recorded = local;
    }
  }

  /** Drops the jobs not sampled in this round (gone, or moved away). */
  keepOnly(jobs: Set<string>): void {
    for (const j of this.#last.keys()) if (!jobs.has(j)) this.#last.delete(j);
  }
}
