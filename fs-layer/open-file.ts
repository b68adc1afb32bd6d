// One open file of /pj, as the kernel's file handle (fh) names it, and the I/O
// policy for remote ones: reads fetched ahead of a sequential reader, writes
// sent behind (answered to the kernel at once, all on the owner before close
// or fsync returns; a failure surfaces at the next write, flush or fsync, as on NFS).
import type { FsBackend } from './backend.js';
import type { InodeTable, Node } from './inode-table.js';

/** Remote writes a file may have in flight before a WRITE waits. */
const WRITE_BEHIND = 8;
/** Blocks fetched ahead of a sequential remote reader. */
const READ_AHEAD = 8;

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

export class OpenFile {
  /** Whether a POSIX lock was ever taken through this file (then close must drop the closer's locks). */
  locked = false;
  closed = false;
  #writes = new Set<Promise<void>>();
  #writeError: Error | undefined;
  #ahead = new Map<number, { size: number; data: Promise<Buffer[]> }>();
  #nextOffset = 0;

  readonly node: Node;
  readonly backend: FsBackend;
  /** The owner's handle. */
  readonly handle: number;
  readonly passthrough: boolean;
  /** An exported device: reads wait for data; nothing is cached or written behind. */
  readonly device: boolean;
  /** Where a write's post-op attributes go. */
  readonly #nodes: InodeTable;

  constructor(o: { node: Node; backend: FsBackend; handle: number; passthrough?: boolean; device?: boolean; nodes: InodeTable }) {
    this.node = o.node;
    this.backend = o.backend;
    this.handle = o.handle;
    this.passthrough = o.passthrough ?? false;
    this.device = o.device ?? false;
    this.#nodes = o.nodes;
  }

  get writing(): boolean { return this.#writes.size > 0; }

  /** Waits for the writes sent behind, leaving a failure to be reported by drain(). */
  async settled(): Promise<void> {
    while (this.#writes.size) await Promise.all(this.#writes);
  }

  /** Waits for the writes sent behind; reports (once) the first that failed. */
  async drain(): Promise<void> {
    await this.settled();
    const e = this.#writeError;
    this.#writeError = undefined;
    if (e) throw e;
  }

  /** Forgets what was read ahead (the file changed under it). */
  dropReadAhead(): void { this.#ahead.clear(); }

  /** A write: local ones at once, remote ones sent behind. Resolves with the bytes accepted. */
  async write(offset: number, data: Buffer): Promise<number> {
    if (this.backend.local) return (await this.backend.write(this.handle, offset, data)).size;
    if (this.#writeError) await this.drain();
    this.#ahead.clear();
    this.#nodes.stale(this.node); // until the owner's answer says what the file is now
    while (this.#writes.size >= WRITE_BEHIND) await Promise.race(this.#writes);
    const p: Promise<void> = this.backend.write(this.handle, offset, data).then(
      (r) => { this.#writes.delete(p); if (!this.#writes.size) this.#nodes.remember(this.node, r.attr); },
      (e: Error) => { this.#writes.delete(p); this.#writeError ??= e; },
    );
    this.#writes.add(p);
    return data.length;
  }

  /**
   * A read, as reply parts. A block fetched ahead serves a READ at its offset only if it holds
   * at least the bytes asked for: a short reply would tell the kernel the file ends there.
   */
  async read(offset: number, size: number): Promise<Buffer[]> {
    if (this.backend.local) return this.backend.read(this.handle, offset, size);
    if (this.#writes.size) await this.drain();
    const sequential = offset === this.#nextOffset;
    this.#nextOffset = offset + size;
    const ahead = this.#ahead.get(offset);
    this.#ahead.delete(offset);
    if (!sequential) this.#ahead.clear();
    let block = ahead && ahead.size >= size ? ahead.data.then((d) => firstBytes(d, size)) : undefined;
    block ??= this.backend.read(this.handle, offset, size);
    if (sequential) {
      for (let i = 1; i <= READ_AHEAD; i++) {
        const at = offset + i * size;
        if (this.#ahead.has(at)) continue;
        const data = this.backend.read(this.handle, at, size);
        data.catch(() => {}); // a failed read-ahead is retried by the read that needs it
        this.#ahead.set(at, { size, data });
      }
    }
    const data = await block;
    if (data.reduce((n, b) => n + b.length, 0) < size) this.#ahead.clear(); // end of file
    return data;
  }
}
