// Who may do what with jobs, asked through the control socket: any local user
// may run jobs, which run as that user (its uid, gid and groups, no
// capabilities) on every host they move to; a user sees and acts on their own
// jobs only, root on all. The caller is the control socket's SO_PEERCRED,
// never what the request says.
import { readFileSync } from 'node:fs';
import { PjError, codes } from '../common/errors.js';
import type { JobRecord } from './jobs.js';

/** A control socket's caller. */
export interface Asker { uid: number; gid: number; pid: number }

/** Who a job's command runs as (pj-init --user). */
export interface JobUser { uid: number; gid: number; groups: number[] }

/** Whether `who` is a user other than root: root, and requests not from the control socket (another host's manager), act on every job. */
export const isUser = (who: Asker | undefined): who is Asker => who !== undefined && who.uid !== 0;

/** A job's user: root for the jobs of before (no uid recorded). */
export const ownerOf = (rec: JobRecord): number => rec.uid ?? 0;

/** Throws unless `who` may act on `rec`. */
export function mayActOn(who: Asker | undefined, rec: JobRecord, action: string): void {
  if (isUser(who) && ownerOf(rec) !== who.uid) throw new PjError(codes.PERMISSION, `job ${rec.id} is uid ${ownerOf(rec)}'s: uid ${who.uid} may not ${action} it`);
}

/** Rejects unless `who` is root. */
export async function rootOnly(who: Asker | undefined, action: string): Promise<void> {
  if (isUser(who)) throw new PjError(codes.PERMISSION, `only root may ${action} (uid ${who.uid} asked)`);
}

/** The jobs `who` may see. */
export const visibleTo = <T extends JobRecord>(who: Asker | undefined, recs: T[]): T[] => (isUser(who) ? recs.filter((r) => ownerOf(r) === who.uid) : recs);

/**
 * Who a job `who` starts runs as: nobody but themself (root's jobs run as root). The groups are the
 * calling process's (the pj CLI's: not a FUSE caller, so its /proc is read without risk).
 */
export function userOf(who: Asker | undefined): JobUser | undefined {
  if (!isUser(who)) return undefined;
  let groups: number[] = [];
  try {
    const line = readFileSync(`/proc/${who.pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('Groups:'));
    groups = (line?.slice('Groups:'.length).trim().split(/\s+/) ?? []).filter(Boolean).map(Number);
  } catch { /* gone already: its own gid only */ }
  return { uid: who.uid, gid: who.gid, groups };
}
