// A host's page store: 4 KiB pages addressed by their XXH3-128 hash, so that a
// job arriving (or coming back) restores every page the host already holds.
// Pages are appended to segment files (hash | page, back to back) under a
// folder; the index lives in memory and is rebuilt from the segments at start.
// The store is bounded in bytes: the least recently used segment goes first,
// never one holding a page that a restore in progress has pinned. Room is made
// before pages are taken: when they do not fit within the bound (everything
// left is pinned), or the disk would keep less than MIN_FREE_BYTES free, none
// is written and the caller hears PJ_ERR_PAGE_STORE_FULL. A page read back is
// checked against its hash: a damaged one counts as missing.
import { closeSync, ftruncateSync, mkdirSync, openSync, readSync, readdirSync, rmSync, statSync, statfsSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { PjError, codes } from '../common/errors.js';
import { HASH_BYTES, PAGE, hashAt, hashPages, hashesAt } from './page-scan.js';

const RECORD = HASH_BYTES + PAGE;
/** What the store leaves free on its disk, whatever its bound: the rest of the host needs room too. */
const MIN_FREE_BYTES = 256 * 2 ** 20;
const SEGMENT = /^seg-(\d+)\.pages$/;

interface Segment { id: number; fd: number; records: number; lastUsed: number; hashes: string[] }

/** Where pages are in the store: per page its segment's descriptor, its record's offset and its hash. */
export interface StoredPages { fds: Int32Array; offsets: BigUint64Array; hashes: Buffer }

/** `addedBytes`: every page record this store took in since it opened (evicted ones included). */
export interface PageStoreStats { pages: number; bytes: number; limitBytes: number; segments: number; evictedSegments: number; addedBytes: number }

/** A hash as the index keys it: its 16 bytes as a latin1 string. */
const key = (hash: Buffer): string => hash.toString('latin1');
const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

export class PageStore {
  #index = new Map<string, { seg: Segment; record: number }>();
  #segments = new Map<number, Segment>();
  #current: Segment | undefined;
  #pins = new Map<string, number>();
  #added = 0;
  #clock = 0;
  #evicted = 0;

  constructor(readonly dir: string, readonly limitBytes: number, readonly segmentRecords = 16_384) {
    mkdirSync(dir, { recursive: true });
    for (const name of readdirSync(dir)) {
      const m = SEGMENT.exec(name);
      if (m) this.#load(Number(m[1]), join(dir, name));
    }
  }

  #load(id: number, path: string): void {
    const fd = openSync(path, 'r+');
    const records = Math.floor(statSync(path).size / RECORD);
    ftruncateSync(fd, records * RECORD); // a record cut short by a crash is dropped
    const seg: Segment = { id, fd, records, lastUsed: 0, hashes: [] };
    const hash = Buffer.alloc(HASH_BYTES);
    for (let r = 0; r < records; r++) {
      readSync(fd, hash, 0, HASH_BYTES, r * RECORD);
      const k = key(hash);
      if (this.#index.has(k)) continue;
      this.#index.set(k, { seg, record: r });
      seg.hashes.push(k);
    }
    this.#segments.set(id, seg);
  }

  has(hash: Buffer): boolean {
    return this.#index.has(key(hash));
  }

  /** Which of `hashes` (16 bytes each, back to back) the store lacks, by position. */
  missing(hashes: Buffer): number[] {
    const out: number[] = [];
    for (let i = 0; i * HASH_BYTES < hashes.length; i++) if (!this.#index.has(key(hashAt(hashes, i)))) out.push(i);
    return out;
  }

  /**
   * The pages of `hashes` (16 bytes each) that are here, 4 KiB each in the order asked, and the
   * positions of those that are not (absent, or no longer matching their hash). Runs of records
   * that follow each other in a segment are read at once.
   */
  getMany(hashes: Buffer): { data: Buffer; found: number[]; missing: number[] } {
    const n = hashes.length / HASH_BYTES;
    const at = Array.from({ length: n }, (_, i) => this.#index.get(key(hashAt(hashes, i))));
    const found: number[] = [];
    const missing: number[] = [];
    for (let i = 0; i < n; i++) (at[i] ? found : missing).push(i);
    const data = Buffer.allocUnsafe(found.length * PAGE);
    const records = Buffer.allocUnsafe(Math.min(found.length, 256) * RECORD);
    for (let f = 0; f < found.length;) {
      const first = at[found[f]]!;
      let run = 1;
      while (run < 256 && f + run < found.length && at[found[f + run]]!.seg === first.seg && at[found[f + run]]!.record === first.record + run) run++;
      readSync(first.seg.fd, records, 0, run * RECORD, first.record * RECORD);
      for (let r = 0; r < run; r++) records.copy(data, (f + r) * PAGE, r * RECORD + HASH_BYTES, (r + 1) * RECORD);
      first.seg.lastUsed = ++this.#clock;
      f += run;
    }
    // A damaged record counts as missing.
    const actual = hashPages(data);
    const good: number[] = [];
    for (let f = 0; f < found.length; f++) {
      const i = found[f];
      if (hashAt(actual, f).equals(hashAt(hashes, i))) good.push(f);
      else {
        this.#index.delete(key(hashAt(hashes, i)));
        missing.push(i);
      }
    }
    if (good.length === found.length) return { data, found, missing };
    const kept = Buffer.allocUnsafe(good.length * PAGE);
    good.forEach((f, k) => data.copy(kept, k * PAGE, f * PAGE, (f + 1) * PAGE));
    return { data: kept, found: good.map((f) => found[f]), missing: missing.sort((a, b) => a - b) };
  }

  /**
   * Where the pages of `hashes` (16 bytes each) are, for a reader of the segment files (the pager):
   * `found` gives the positions of those here, in the order of `at`. They are read unchecked: the
   * reader checks each page against its hash. Pin them first (`pin`) so that they stay.
   */
  locate(hashes: Buffer): { found: number[]; at: StoredPages } {
    const found: number[] = [];
    const places: Array<{ seg: Segment; record: number }> = [];
    for (let i = 0; i * HASH_BYTES < hashes.length; i++) {
      const place = this.#index.get(key(hashAt(hashes, i)));
      if (!place) continue;
      found.push(i);
      places.push(place);
      place.seg.lastUsed = ++this.#clock;
    }
    return {
      found,
      at: {
        fds: Int32Array.from(places, (p) => p.seg.fd),
        offsets: BigUint64Array.from(places, (p) => BigInt(p.record * RECORD)),
        hashes: hashesAt(hashes, found),
      },
    };
  }

  /** A page whose record turned out damaged (a reader of `locate` found so): the store no longer offers it. */
  forget(hash: Buffer): void {
    this.#index.delete(key(hash));
  }

  /** The page, or undefined when it is not here (or no longer matches its hash). */
  get(hash: Buffer): Buffer | undefined {
    const r = this.getMany(hash);
    return r.found.length ? r.data : undefined;
  }

  /**
   * Adds pages (`data`: 4 KiB each) under their hashes (16 bytes each, in the same order); those
   * already here are skipped. PJ_ERR_PAGE_STORE_FULL, with nothing added, when they do not fit.
   */
  put(hashes: Buffer, data: Buffer): number {
    this.#reserve(this.missing(hashes).length * RECORD);
    let added = 0;
    let seg = this.#writable();
    let batch: Buffer[] = [];
    const flush = () => {
      if (!batch.length) return;
      const records = Buffer.concat(batch);
      writeSync(seg.fd, records, 0, records.length, (seg.records - batch.length / 2) * RECORD);
      batch = [];
    };
    for (let i = 0; i * PAGE < data.length; i++) {
      const hash = hashAt(hashes, i);
      const k = key(hash);
      const known = this.#index.get(k);
      if (known) {
        known.seg.lastUsed = ++this.#clock;
        continue;
      }
      if (seg.records >= this.segmentRecords) {
        flush();
        seg = this.#writable();
      }
      batch.push(hash, data.subarray(i * PAGE, (i + 1) * PAGE));
      this.#index.set(k, { seg, record: seg.records++ });
      seg.hashes.push(k);
      seg.lastUsed = ++this.#clock;
      added++;
    }
    flush();
    this.#added += added * RECORD;
    this.#evict();
    return added;
  }

  /** Keeps the pages of `hashes` from eviction until the returned function is called (a restore in progress). */
  pin(hashes: Buffer): () => void {
    const keys: string[] = [];
    for (let i = 0; i * HASH_BYTES < hashes.length; i++) keys.push(key(hashAt(hashes, i)));
    for (const k of keys) this.#pins.set(k, (this.#pins.get(k) ?? 0) + 1);
    return () => {
      for (const k of keys) {
        const n = (this.#pins.get(k) ?? 1) - 1;
        if (n > 0) this.#pins.set(k, n);
        else this.#pins.delete(k);
      }
      this.#evict();
    };
  }

  stats(): PageStoreStats {
    let records = 0;
    for (const s of this.#segments.values()) records += s.records;
    return { pages: this.#index.size, bytes: records * RECORD, limitBytes: this.limitBytes, segments: this.#segments.size, evictedSegments: this.#evicted, addedBytes: this.#added };
  }

  close(): void {
    for (const s of this.#segments.values()) closeSync(s.fd);
    this.#segments.clear();
    this.#index.clear();
  }

  #writable(): Segment {
    if (this.#current && this.#current.records < this.segmentRecords) return this.#current;
    const id = Math.max(0, ...this.#segments.keys()) + 1;
    const seg: Segment = { id, fd: openSync(join(this.dir, `seg-${id}.pages`), 'w+'), records: 0, lastUsed: ++this.#clock, hashes: [] };
    this.#segments.set(id, seg);
    this.#current = seg;
    return seg;
  }

  /** Makes room for `bytes` more (evicting), or refuses them. */
  #reserve(bytes: number): void {
    if (bytes === 0) return;
    this.#evict(bytes);
    const { bytes: held } = this.stats();
    if (held + bytes > this.limitBytes) {
      throw new PjError(codes.PAGE_STORE_FULL, `the page store is full: ${mib(held)} held (pinned by moves under way) and ${mib(bytes)} more asked, bound ${mib(this.limitBytes)} (--page-store-size)`);
    }
    const s = statfsSync(this.dir);
    const free = s.bavail * s.bsize;
    if (free - bytes < MIN_FREE_BYTES) {
      throw new PjError(codes.PAGE_STORE_FULL, `the page store's disk (${this.dir}) has ${mib(free)} free; it keeps ${mib(MIN_FREE_BYTES)} free for the rest of the host`);
    }
  }

  /** Drops least recently used segments while over the bound (less `room`); the one being written and pinned ones stay. */
  #evict(room = 0): void {
    while (this.stats().bytes + room > this.limitBytes) {
      const victim = [...this.#segments.values()]
        .filter((s) => s !== this.#current && !s.hashes.some((k) => this.#pins.has(k)))
        .sort((a, b) => a.lastUsed - b.lastUsed)[0];
      if (!victim) return; // everything left is pinned or being written: over the bound until a restore ends
      for (const k of victim.hashes) if (this.#index.get(k)?.seg === victim) this.#index.delete(k);
      closeSync(victim.fd);
      rmSync(join(this.dir, `seg-${victim.id}.pages`), { force: true });
      this.#segments.delete(victim.id);
      this.#evicted++;
    }
  }
}
