// This agent's cache of remote file data, shared by every open file: the
// owner's answers to reads (those asked for and those fetched ahead of a
// sequential reader), keyed by (host, export, inode, version, generation,
// offset) under a byte limit. The version is the owner's (mtime, ctime, size)
// seen at open, so a change made anywhere before an open is never served from
// here (close-to-open); the generation moves with each change made through this
// host. The kernel's page cache comes first; this one serves what it does not
// keep: O_DIRECT reads, and pages the kernel dropped.
import { LRUCache } from 'lru-cache';
import type { Node } from './inode-table.js';

interface Block { size: number; data: Promise<Buffer[]> }

/** The first `n` bytes of pieces, uncopied. */
function firstBytes(pieces: Buffer[], n: number): Buffer[] {
  const out: Buffer[] = [];
  for (const p of pieces) {
    if (n <= 0) break;
    out.push(p.length <= n ? p : p.subarray(0, n));
    n -= p.length;
  }
  return out;
}

export interface DataCacheStats { bytes: number; limitBytes: number; blocks: number; hits: number; misses: number }

export class DataCache {
  #lru: LRUCache<string, Block> | undefined;
  #generation = new WeakMap<Node, number>();
  #hits = 0;
  #misses = 0;

  constructor(readonly limitBytes: number) {
    if (limitBytes > 0) this.#lru = new LRUCache<string, Block>({ maxSize: limitBytes, sizeCalculation: (b) => Math.max(1, b.size) });
  }

  #key(n: Node, offset: number): string {
    return `${n.key}|${n.version}|${this.#generation.get(n) ?? 0}|${offset}`;
  }

  /**
   * `size` bytes at `offset`: from a block that holds at least that many (a shorter one would tell
   * the kernel the file ends there), else fetched and kept.
   */
  read(n: Node, offset: number, size: number, fetch: () => Promise<Buffer[]>): Promise<Buffer[]> {
    const key = this.#key(n, offset);
    const hit = this.#lru?.get(key);
    if (hit && hit.size >= size) {
      this.#hits++;
      return hit.data.then((d) => firstBytes(d, size));
    }
    this.#misses++;
    return this.#keep(key, size, fetch());
  }

  /** Starts fetching a block a sequential reader will ask for next, unless it is here already. */
  prefetch(n: Node, offset: number, size: number, fetch: () => Promise<Buffer[]>): void {
    const key = this.#key(n, offset);
    if (!this.#lru || (this.#lru.get(key)?.size ?? -1) >= size) return;
    this.#keep(key, size, fetch()).catch(() => {}); // a failed fetch is retried by the read that needs it
  }

  #keep(key: string, size: number, data: Promise<Buffer[]>): Promise<Buffer[]> {
    if (!this.#lru) return data;
    const block = { size, data };
    this.#lru.set(key, block);
    data.catch(() => { if (this.#lru?.peek(key) === block) this.#lru.delete(key); });
    return data;
  }

  /** The node's data changed through this host: what is kept of it is no longer served. */
  changed(n: Node): void {
    this.#generation.set(n, (this.#generation.get(n) ?? 0) + 1);
  }

  /** Forgets everything (`pj cache drop`). */
  drop(): void {
    this.#lru?.clear();
  }

  stats(): DataCacheStats {
    return { bytes: this.#lru?.calculatedSize ?? 0, limitBytes: this.limitBytes, blocks: this.#lru?.size ?? 0, hits: this.#hits, misses: this.#misses };
  }
}
