// What a move is, as both its sides and the CLI see it: the modes, what pj mv
// reports, and how long a transfer may make no progress.
export const MODES = ['hybrid', 'stop-copy', 'pre-copy', 'post-copy'] as const;
export type MoveMode = (typeof MODES)[number];

export interface MoveResult {
  job: string; from: string; to: string; mode: MoveMode;
  downtime_ms: number; dump_ms: number; transfer_ms: number; restore_ms: number; bytes_sent: number;
  /** Lazy modes: pre-copy rounds and their bytes, the images' bytes, pages fetched after the freeze or taken from the destination's store, and when the last one was there. */
  precopy_rounds?: number; bytes_precopy?: number; bytes_frozen?: number; bytes_lazy?: number;
  pages_from_store?: number; pages_fetched?: number; all_local_ms?: number;
  /** Of pages_fetched, those fetched once the job ran again (pre-copy: none, its last pages come during the freeze). */
  pages_fetched_after_resume?: number;
  /**
   * Lazy modes: faults, and how long the pager took to serve them, by where the page was: in the pager
   * already (given, or its place in this host's store), brought from this host after the fault, fetched from another.
   */
  faults?: { local: number; handed: number; fetched: number; local_p50_us: number; local_p99_us: number; handed_p50_us: number; fetched_p50_us: number; fetched_p99_us: number };
  /** Lazy modes: what the job did to its memory while pages came (each followed by the pager): forks, mremaps, ranges unmapped or dropped. */
  memory_changes?: { forks: number; remaps: number; drops: number };
  /** Set instead of the figures when the source's manager went away after committing. */
  note?: string;
}
export interface MoveProgress { phase: string; bytesSent: number; elapsedMs: number }

/** A transfer that makes no progress for this long (a cut link) is given up. */
export const TRANSFER_IDLE_MS = 15_000;
