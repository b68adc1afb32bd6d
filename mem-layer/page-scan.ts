// A job's memory by content: the present pages of a process and their
// XXH3-128 hashes (native/src/page-hash.cc), as the pre-copy rounds and the
// manifest of a frozen job need them. Only the memory CRIU would carry is
// scanned: private writable mappings (anonymous memory, heap, stacks, written
// copies of file pages) and shared anonymous ones; file pages mapped read-only
// come back from their files.
import { readFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { systemError } from '../common/errors.js';
import { call, loadBinding } from '../native/loader.js';

export const PAGE = 4096;
export const HASH_BYTES = 16;

/** The present pages of a process: their addresses and, 16 bytes each in the same order, their hashes. */
export interface PageScan { addrs: BigUint64Array; hashes: Buffer }

const SKIPPED = new Set(['[vvar]', '[vvar_vclock]', '[vdso]', '[vsyscall]']);

/**
 * The ranges to scan, [start, end, start, end…], from /proc/<pid>/maps (read off the event loop: it
 * waits while the process is in execve, which may wait for this agent).
 */
export async function memoryRanges(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const line of (await readFile(`/proc/${pid}/maps`, 'utf8')).split('\n')) {
    const f = line.split(/\s+/);
    if (f.length < 5) continue;
    const [range, perms] = f;
    const name = f.slice(5).join(' ');
    const anonymous = name === '' || name.startsWith('[') || name.startsWith('/dev/zero') || name.startsWith('/SYSV');
    const carried = perms[0] === 'r' && ((perms[3] === 'p' && perms[1] === 'w') || (perms[3] === 's' && anonymous));
    if (!carried || SKIPPED.has(name)) continue;
    const [start, end] = range.split('-').map((x) => parseInt(x, 16));
    out.push(start, end);
  }
  return out;
}

/** `idle`: the scan takes only CPU that nothing else wants (SCHED_IDLE). */
export async function scanPages(pid: number, ranges?: number[], idle = false): Promise<PageScan> {
  const r = await loadBinding().pageScan(pid, ranges ?? (await memoryRanges(pid)), idle);
  if ('errno' in r) throw systemError(r);
  const addrs = new BigUint64Array(r.addrs.length / 8);
  Buffer.from(addrs.buffer).set(r.addrs); // copied: the Buffer need not be 8-byte aligned
  return { addrs, hashes: r.hashes };
}

/** The contents of pages of a process (4 KiB each, in the order given; addresses as u64 LE bytes or a BigUint64Array). */
export function readPages(pid: number, addrs: BigUint64Array | Uint8Array): Buffer {
  return call((ctx) => loadBinding().readPages(pid, Buffer.from(addrs.buffer, addrs.byteOffset, addrs.byteLength), ctx));
}

/**
 * The contents of those pages of a running process that are still mapped: one it unmapped since
 * they were scanned (EFAULT, or a read that stops short) is left out, and so is the rest once the
 * process has ended (ESRCH). Read on a pool thread.
 */
export async function readMappedPages(pid: number, addrs: bigint[]): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for (let at = 0; at < addrs.length;) {
    const rest = BigUint64Array.from(addrs.slice(at));
    const r = await loadBinding().readPagesAsync(pid, Buffer.from(rest.buffer, rest.byteOffset, rest.byteLength));
    if (!Buffer.isBuffer(r) && r.errno === constants.errno.ESRCH) break; // the process ended: nothing more to read
    if (!Buffer.isBuffer(r) && r.errno !== constants.errno.EFAULT) throw systemError(r);
    const data = Buffer.isBuffer(r) ? r : Buffer.alloc(0);
    pieces.push(data);
    at += data.length / PAGE + 1; // past the page that could not be read, if any
  }
  return pieces.length === 1 ? pieces[0] : Buffer.concat(pieces);
}

/** The hash at position `i` of hashes laid back to back (16 bytes each). */
export const hashAt = (hashes: Buffer, i: number): Buffer => hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);

/** The hashes at `positions`, back to back. */
export const hashesAt = (hashes: Buffer, positions: number[]): Buffer => Buffer.concat(positions.map((i) => hashAt(hashes, i)), positions.length * HASH_BYTES);

/** The hash of each 4 KiB page of `data`, 16 bytes each. */
export const hashPages = (data: Buffer): Buffer => loadBinding().hashPages(data);
