// What the cluster knows of a job: its record in etcd's job table, changed only
// by compare-and-swap (the host it runs on is the one the record names), and
// where its files live: /pj/<origin>/.pj-jobs/<id>/{stdout,stderr,status}, the
// same path on every host, so its output follows it wherever it moves.
import { randomBytes } from 'node:crypto';
import type { Policy } from './policy.js';

/** The export every agent offers for the files of the jobs it started (a name users cannot give: it starts with a dot). */
export const JOBS_EXPORT = '.pj-jobs';

export interface JobRecord {
  id: string;
  name: string;
  cmd: string[];
  cwd: string;
  /** The host whose jobs export holds the job's files. */
  origin: string;
  /** The job's files, as a /pj path. */
  dir: string;
  /** Where the job runs, and its first process (pj-init) as that host sees it. */
  host: string;
  pid: number;
  /** The first process's start time (clock ticks after boot), so that a reused pid is never taken for it. */
  pidStart: number;
  state: 'running' | 'exited';
  moves: number;
  /** Hosts whose page stores kept the job's pages when it left them, the most recent first. */
  holders?: string[];
  startedAt: string;
  /** Ports published for it (pj run --publish): PORT on its origin (or every host) to JOBPORT of the job. */
  publish?: Array<{ port: number; jobPort: number; everywhere: boolean }>;
  /** How the manager places it (pj run --policy, pj policy); follow when absent. */
  policy?: Policy;
  /** Policy 'cheap': the remote traffic (bytes/s) a cheaper host may add. */
  budget?: number;
  /** When it last moved, and why ('by hand', or the policy's reason). */
  movedAt?: string;
  moveReason?: string;
  /** Whose job it is (the uid that ran it; absent: root's), and who its command runs as. */
  uid?: number;
  gid?: number;
  groups?: number[];
  /** Stopped by `pj kill -s STOP` (its processes but the first): it stays stopped, wherever it moves, until SIGCONT. */
  stopped?: boolean;
  /** The host its last move went to, which lost it before every page arrived: it runs on from the source's frozen copy. */
  takenBackFrom?: string;
  /** Why its output cannot be written now (its origin's jobs folder is full), while that lasts. */
  outputError?: string;
  /** "exit N" or "signal N", once it ended. */
  exit?: string;
}

/** The record of a job running again from its frozen copy (fields of `copy` override), since `from` lost it before every page arrived. */
export function takenBack(rec: JobRecord, from: string, copy: Partial<JobRecord> = {}): JobRecord {
  return { ...rec, ...copy, state: 'running', takenBackFrom: from, moveReason: `taken back: ${from} lost it before every page arrived`, movedAt: new Date().toISOString() };
}

/** A short id that never looks like a pid (pj-mv takes both). */
export const newJobId = (): string => `j${randomBytes(3).toString('hex')}`;

export const jobDir = (mount: string, origin: string, id: string): string => `${mount}/${origin}/${JOBS_EXPORT}/${id}`;
