// Pre-copy without kernel dirty bits (this kernel has no soft-dirty): while the
// job runs, each round hashes its present pages (pagemap + process_vm_readv,
// native/src/page-hash.cc), asks the destination which hashes its page store
// lacks and sends those pages only. Rounds go on while what changed shrinks;
// what changes after the last one is fetched lazily after the freeze. A page
// that changes between its hash and its read is stored under the hash of what
// was read: the store never holds a page under a wrong hash.
import { codes } from '../common/errors.js';
import { HASH_BYTES, hashPages, hashesAt, readMappedPages, scanPages } from './page-scan.js';

const MAX_ROUNDS = 5;
/** A round that sends no more pages than this ends the pre-copy. */
const SMALL_ROUND_BYTES = 1 << 20;
const HAVE_BATCH = 65_536;
const PUT_PAGES = 1024;
const PUTS_IN_FLIGHT = 4;

/** The destination's store, as the pre-copy sees it. */
export interface StoreAt {
  /** Positions of the hashes (16 bytes each) the destination lacks. */
  missing(hashes: Buffer): Promise<number[]>;
  put(hashes: Buffer, data: Buffer): Promise<void>;
}

export interface PrecopyResult { rounds: number; bytes: number }

/**
 * `pids`: the job's processes on this host, asked again each round (a job may fork). A destination
 * whose store is full (PJ_ERR_PAGE_STORE_FULL) ends the pre-copy: the rest comes after the freeze.
 */
export async function precopy(pids: () => Promise<number[]>, to: StoreAt, onBytes: (n: number) => void = () => {}): Promise<PrecopyResult> {
  let full = false;
  const store: StoreAt = {
    ...to,
    put: (hashes, data) => to.put(hashes, data).catch((e: { code?: string }) => {
      if (e.code !== codes.PAGE_STORE_FULL) throw e;
      full = true;
    }),
  };
  const there = new Set<string>(); // hashes the destination holds (or was sent)
  let total = 0;
  let previous = Infinity;
  let rounds = 0;
  while (rounds < MAX_ROUNDS && !full) {
    rounds++;
    let pageBytes = 0;
    for (const pid of await pids()) {
      if (full) break;
      const scan = await scanPages(pid).catch(() => undefined); // a process that ended meanwhile has nothing to send
      if (!scan) continue;
      const fresh: number[] = [];
      for (let i = 0; i < scan.addrs.length; i++) {
        const k = scan.hashes.toString('latin1', i * HASH_BYTES, (i + 1) * HASH_BYTES);
        if (!there.has(k)) {
          there.add(k);
          fresh.push(i);
        }
      }
      const send: bigint[] = [];
      for (let b = 0; b < fresh.length; b += HAVE_BATCH) {
        const part = fresh.slice(b, b + HAVE_BATCH);
        const lacking = await store.missing(hashesAt(scan.hashes, part));
        for (const j of lacking) send.push(scan.addrs[part[j]]);
      }
      onBytes(fresh.length * HASH_BYTES);
      total += fresh.length * HASH_BYTES;
      pageBytes += await sendPages(pid, send, store, onBytes, () => full);
    }
    total += pageBytes;
    if (pageBytes <= SMALL_ROUND_BYTES || pageBytes > previous / 2) break;
    previous = pageBytes;
  }
  return { rounds, bytes: total };
}

/** Reads and sends pages of `pid`, a few batches in flight, until the destination is full; returns the bytes sent. */
async function sendPages(pid: number, addrs: bigint[], to: StoreAt, onBytes: (n: number) => void, full: () => boolean): Promise<number> {
  let bytes = 0;
  const inFlight = new Set<Promise<void>>();
  for (let b = 0; b < addrs.length && !full(); b += PUT_PAGES) {
    const data = await readMappedPages(pid, addrs.slice(b, b + PUT_PAGES)); // pages unmapped since the scan are left out
    if (!data.length) continue;
    const hashes = hashPages(data);
    bytes += data.length + hashes.length;
    onBytes(data.length + hashes.length);
    const put = to.put(hashes, data).finally(() => inFlight.delete(put));
    put.catch(() => {}); // the failure is seen by the race or the final wait
    inFlight.add(put);
    if (inFlight.size >= PUTS_IN_FLIGHT) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  return bytes;
}

