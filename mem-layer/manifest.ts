// A frozen job's manifest: for each task, the pages a lazy dump left in place
// (the PE_LAZY entries of its pagemap image) and their hashes, so that a
// destination takes every page its store holds from there and fetches the
// others, from the frozen source or, by hash, from any host that holds them.
import { dumpedTasks, lazyRanges } from './criu-images.js';
import { PAGE, scanPages } from './page-scan.js';

/** One task's lazy pages: addresses (u64 LE each) and, in the same order, hashes (16 bytes each). */
export interface TaskManifest { id: number; addrs: Buffer; hashes: Buffer }

/** Pages hashed per step, each step at the priority `idle()` says then. */
const STEP_PAGES = 16_384;

/**
 * Hashes the frozen memory of a lazy dump in `dir`; `hostPid` maps each task's id in the job's namespace
 * to its pid here. While `idle()` says so (the job's restore runs, which must not wait for it), at idle priority.
 */
export async function frozenManifest(dir: string, hostPid: Map<number, number>, idle: () => boolean): Promise<TaskManifest[]> {
  const out: TaskManifest[] = [];
  for (const id of dumpedTasks(dir)) {
    const pid = hostPid.get(id);
    if (pid === undefined) continue;
    const addrs: Buffer[] = [];
    const hashes: Buffer[] = [];
    for (const step of steps(lazyRanges(dir, id))) {
      const scan = await scanPages(pid, step, idle());
      addrs.push(Buffer.from(scan.addrs.buffer, scan.addrs.byteOffset, scan.addrs.byteLength));
      hashes.push(scan.hashes);
    }
    if (addrs.length) out.push({ id, addrs: Buffer.concat(addrs), hashes: Buffer.concat(hashes) });
  }
  return out;
}

/** Ranges ([start, end, …]) of about STEP_PAGES pages each. */
function steps(ranges: Array<{ vaddr: number; pages: number }>): number[][] {
  const out: number[][] = [];
  let step: number[] = [];
  let pages = 0;
  for (const r of ranges) {
    for (let p = 0; p < r.pages;) {
      const n = Math.min(r.pages - p, STEP_PAGES - pages);
      step.push(r.vaddr + p * PAGE, r.vaddr + (p + n) * PAGE);
      p += n;
      if ((pages += n) === STEP_PAGES) {
        out.push(step);
        step = [];
        pages = 0;
      }
    }
  }
  if (step.length) out.push(step);
  return out;
}
