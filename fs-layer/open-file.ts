// One open file of /pj, as the kernel's file handle (fh) names it, and the I/O
// policy for remote ones: reads served from this agent's data cache, blocks
// fetched ahead of a sequential reader, writes sent behind (answered to the
// kernel at once, all on the owner before close or fsync returns; a failure
// surfaces at the next write, flush or fsync, as on NFS).
import type { FsBackend } from './backend.js';
import type { DataCache } from './data-cache.js';
import type { InodeTable, Node } from './inode-table.js';
import { O } from './open-flags.js';

/** Remote writes a file may have in flight before a WRITE waits. */
const WRITE_BEHIND = 8;
/** Blocks fetched ahead of a sequential remote reader. */
const READ_AHEAD = 8;

export class OpenFile {
  /** Whether a POSIX lock was ever taken through this file (then close must drop the closer's locks). */
  locked = false;
  /** POSIX lock owners that took a lock through this file, and the thread that asked (FUSE's pid). */
  readonly lockers = new Map<string, number>();
  closed = false;
  #writes = new Set<Promise<void>>();
  #writeError: Error | undefined;
  #nextOffset = 0;

  readonly node: Node;
  readonly backend: FsBackend;
  /** The owner's handle (see use()). */
  #handle: number;
  #reopening: Promise<void> | undefined;
  /** The open(2) flags, to open the file again on an owner that restarted. */
  readonly #flags: number;
  readonly passthrough: boolean;
  /** An exported device: reads wait for data; nothing is cached or written behind. */
  readonly device: boolean;
  /** Where a write's post-op attributes go. */
  readonly #nodes: InodeTable;
  readonly #cache: DataCache;

  constructor(o: { node: Node; backend: FsBackend; handle: number; flags: number; passthrough?: boolean; device?: boolean; nodes: InodeTable; cache: DataCache }) {
    this.node = o.node;
    this.backend = o.backend;
    this.#handle = o.handle;
    this.#flags = o.flags;
    this.passthrough = o.passthrough ?? false;
    this.device = o.device ?? false;
    this.#nodes = o.nodes;
    this.#cache = o.cache;
  }

  get handle(): number { return this.#handle; }

  /**
   * Runs an operation on the owner's handle. An owner whose manager restarted knows no handle from
   * before (EBADF): the file is opened there again by its path, once, and the operation repeated,
   * so a program keeps its open files through an owner's restart (as NFS's stateless handles allow).
   */
  async use<T>(op: (handle: number) => Promise<T>): Promise<T> {
    const h = this.#handle;
    try {
      return await op(h);
    } catch (e) {
      if (this.backend.local || this.device || (e as NodeJS.ErrnoException).code !== 'EBADF') throw e;
      if (this.#handle === h) {
        this.#reopening ??= this.backend.open(this.node.exp, this.node.rel, this.#flags & ~(O.O_CREAT | O.O_EXCL | O.O_TRUNC))
          .then((r) => { this.#handle = r.handle; })
          .finally(() => { this.#reopening = undefined; });
        await this.#reopening;
      }
      return op(this.#handle);
    }
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

  /** The file's data changed through this host (truncate, fallocate, a copy into it). */
  changed(): void { this.#cache.changed(this.node); }

  /** A write: local ones at once, remote ones sent behind. Resolves with the bytes accepted. */
  async write(offset: number, data: Buffer): Promise<number> {
    if (this.backend.local) return (await this.backend.write(this.#handle, offset, data)).size;
    if (this.#writeError) await this.drain();
    this.#cache.changed(this.node);
    this.#nodes.stale(this.node); // until the owner's answer says what the file is now
    while (this.#writes.size >= WRITE_BEHIND) await Promise.race(this.#writes);
    const p: Promise<void> = this.use((h) => this.backend.write(h, offset, data)).then(
      (r) => { this.#writes.delete(p); if (!this.#writes.size) this.#nodes.remember(this.node, r.attr); },
      (e: Error) => { this.#writes.delete(p); this.#writeError ??= e; },
    );
    this.#writes.add(p);
    return data.length;
  }

  /** A read, as reply parts; a sequential reader gets the next blocks fetched ahead, up to the end of the file. */
  async read(offset: number, size: number): Promise<Buffer[]> {
    if (this.backend.local) return this.backend.read(this.#handle, offset, size);
    if (this.#writes.size) await this.drain();
    const fetch = (at: number) => () => this.use((h) => this.backend.read(h, at, size));
    const data = this.#cache.read(this.node, offset, size, fetch(offset));
    if (offset === this.#nextOffset) {
      const end = this.node.attr?.size ?? Infinity;
      for (let i = 1, at = offset + size; i <= READ_AHEAD && at < end; i++, at += size) this.#cache.prefetch(this.node, at, size, fetch(at));
    }
    this.#nextOffset = offset + size;
    return data;
  }
}
