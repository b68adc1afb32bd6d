// A frozen job's manifest: for each task, the pages a lazy dump left in place
// (the PE_LAZY entries of its pagemap image) and their hashes, so that a
// destination takes every page its store holds from there and fetches the
// others, from the frozen source or, by hash, from any host that holds them.
import { dumpedTasks, lazyRanges } from './criu-images.js';
import { PAGE, scanPages } from './page-scan.js';

/** One task's lazy pages: addresses (u64 LE each) and, in the same order, hashes (16 bytes each). */
export interface TaskManifest { id: number; addrs: Buffer; hashes: Buffer }

/**
 * Hashes the frozen memory of a lazy dump in `dir`; `hostPid` maps each task's id in the job's namespace
 * to its pid here. At idle priority: it runs while the job's restore does, which must not wait for it.
 */
export async function frozenManifest(dir: string, hostPid: Map<number, number>): Promise<TaskManifest[]> {
  const out: TaskManifest[] = [];
  for (const id of dumpedTasks(dir)) {
    const pid = hostPid.get(id);
    const ranges = lazyRanges(dir, id).flatMap((r) => [r.vaddr, r.vaddr + r.pages * PAGE]);
    if (pid === undefined || !ranges.length) continue;
    const scan = await scanPages(pid, ranges, true);
    out.push({ id, addrs: Buffer.from(scan.addrs.buffer, scan.addrs.byteOffset, scan.addrs.byteLength), hashes: scan.hashes });
  }
  return out;
}

/** A task's manifest as a lookup: address -> its hash. */
export function hashesByAddress(m: TaskManifest): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (let i = 0; i * 8 < m.addrs.length; i++) out.set(Number(m.addrs.readBigUInt64LE(i * 8)), m.hashes.subarray(i * 16, (i + 1) * 16));
  return out;
}
