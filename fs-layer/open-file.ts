// One open file of /pj, as the kernel's file handle (fh) names it, and the I/O
// policy for remote ones: reads served from this agent's data cache, blocks
// fetched ahead of a sequential reader, writes sent behind (answered to the
// kernel at once, all on the owner before close or fsync returns; a failure
// surfaces at the next write, flush or fsync, as on NFS).
import { ASK_AGAIN_MS, OWNER_RESTART_MS, type FsBackend } from './backend.js';
import type { DataCache } from './data-cache.js';
import type { Caller } from './export-server.js';
import type { InodeTable, Node } from './inode-table.js';
import { O } from './open-flags.js';
import type { Attr } from './protocol.js';
import { codes, type PjError } from '../common/errors.js';

/** The handle of a file restored from the journal, not yet opened again on its owner. */
export const RESTORED = -1;

/** Where an open file journals its unconfirmed remote writes (see session-journal.ts). */
export interface FileJournal {
  wrote(seq: number, offset: number, data: Buffer, unique: bigint): void;
  confirmed(seq: number): void;
}

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
  /** A read timed out: until the owner answers again, reads fail at once with the same error (the kernel asks again right after a failed read). */
  #silent: Error | undefined;

  readonly node: Node;
  readonly backend: FsBackend;
  /** Who opened it (the owner opens it again as them, after a restart). */
  readonly who: Caller | undefined;
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
  readonly #journal: FileJournal | undefined;
  #seq = 0;
  #unconfirmed = new Map<number, { offset: number; data: Buffer; unique: bigint }>();
  /** Set while writes are sent again in order after the owner's connection dropped. */
  #recovering: Promise<void> | undefined;

  constructor(o: { node: Node; backend: FsBackend; who?: Caller; handle: number; flags: number; passthrough?: boolean; device?: boolean; nodes: InodeTable; cache: DataCache; journal?: FileJournal }) {
    this.node = o.node;
    this.who = o.who;
    this.backend = o.who ? o.backend.as(o.who) : o.backend;
    this.#handle = o.handle;
    this.#flags = o.flags;
    this.passthrough = o.passthrough ?? false;
    this.device = o.device ?? false;
    this.#nodes = o.nodes;
    this.#cache = o.cache;
    this.#journal = o.journal;
  }

  /** The owner's handle; RESTORED until the file is opened again (see use()). */
  get handle(): number { return this.#handle; }
  get flags(): number { return this.#flags; }

  /**
   * Runs an operation on the owner's handle. A file restored by an agent that took over its
   * connection has no handle yet, and an owner whose manager restarted knows no handle from before
   * (EBADF): the file is opened there again by its path, once, and the operation repeated, so a
   * program keeps its open files through either restart (as NFS's stateless handles allow).
   */
  async use<T>(op: (handle: number) => Promise<T>): Promise<T> {
    if (this.#handle === RESTORED) await this.#reopen(RESTORED);
    const h = this.#handle;
    try {
      return await op(h);
    } catch (e) {
      if (this.backend.local || this.device || (e as NodeJS.ErrnoException).code !== 'EBADF') throw e;
      await this.#reopen(h);
      return op(this.#handle);
    }
  }

  /** Opens the file again, unless that was done since the handle `stale` failed. */
  async #reopen(stale: number): Promise<void> {
    if (this.#handle !== stale) return;
    const { exp, rel } = this.node;
    const flags = this.#flags & ~(O.O_CREAT | O.O_EXCL | O.O_TRUNC);
    this.#reopening ??= (this.device ? this.backend.openDevice(exp, flags) : this.backend.open(exp, rel, flags))
      .then((r) => { this.#handle = r.handle; })
      .finally(() => { this.#reopening = undefined; });
    await this.#reopening;
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

  /**
   * A write: local ones at once, remote ones sent behind (and journaled until the owner has them,
   * so that an agent taking over the connection sends them again). One the owner's connection
   * dropped is sent again once it is back. Resolves with the bytes accepted.
   */
  async write(offset: number, data: Buffer, unique: bigint, resent = false): Promise<number> {
    if (this.backend.local) return (await this.use((h) => this.backend.write(h, offset, data))).size;
    if (this.#writeError) await this.drain();
    this.#cache.changed(this.node);
    this.#nodes.stale(this.node); // until the owner's answer says what the file is now
    while (this.#writes.size >= WRITE_BEHIND) await Promise.race(this.#writes);
    const seq = this.#seq++;
    this.#unconfirmed.set(seq, { offset, data, unique });
    this.#journal?.wrote(seq, offset, data, unique);
    const deadline = Date.now() + OWNER_RESTART_MS;
    const attempt = async (uncertain: boolean): Promise<{ attr: Attr }> => {
      const attr = uncertain ? await this.#landed(offset, data.length) : undefined;
      return attr ? { attr } : this.use((h) => this.backend.write(h, offset, data));
    };
    const lost = (e: NodeJS.ErrnoException) => e.code === codes.HOST_UNREACHABLE && Date.now() < deadline;
    /** Sends until the owner answers (or the deadline passes); after a drop the write may have landed. */
    const persist = async (uncertain: boolean): Promise<{ attr: Attr }> => {
      for (;;) {
        try {
          return await attempt(uncertain);
        } catch (e) {
          if (!lost(e as NodeJS.ErrnoException)) throw e;
        }
        uncertain = true;
        await new Promise((r) => setTimeout(r, ASK_AGAIN_MS));
      }
    };
    // Once the owner's connection dropped, writes go again one by one in their order (an append
    // must not overtake the one before it), and new ones queue behind them.
    const send = (): Promise<{ attr: Attr }> => this.#recovering
      ? this.#inOrder(() => persist(resent))
      : attempt(resent).catch((e: NodeJS.ErrnoException) => { if (!lost(e)) throw e; return this.#inOrder(() => persist(true)); });
    const p: Promise<void> = send().then(
      (r) => { this.#writes.delete(p); if (!this.#writes.size) this.#nodes.remember(this.node, r.attr); },
      (e: Error) => { this.#writes.delete(p); this.#writeError ??= e; },
    ).finally(() => { this.#unconfirmed.delete(seq); this.#journal?.confirmed(seq); });
    this.#writes.add(p);
    return data.length;
  }

  /** Runs `op` after every write queued since the owner's connection dropped. */
  #inOrder<T>(op: () => Promise<T>): Promise<T> {
    const done = (this.#recovering ?? Promise.resolve()).then(op);
    const tail: Promise<void> = done.then(() => {}, () => {}).finally(() => { if (this.#recovering === tail) this.#recovering = undefined; });
    this.#recovering = tail;
    return done;
  }

  /**
   * Whether a write that may or may not have reached the owner (its connection dropped, or our agent
   * died, before the answer) is there already: sending an append again would repeat it. A file
   * opened to append has one writer in practice (a job's output), so it holds the write once it
   * is that long. Writes at an offset are simply sent again. Gives the owner's attributes if so.
   */
  async #landed(offset: number, length: number): Promise<Attr | undefined> {
    if (!(this.#flags & O.O_APPEND)) return undefined;
    const attr = await this.backend.lstat(this.node.exp, this.node.rel).catch(() => undefined);
    return attr && attr.size >= offset + length ? attr : undefined;
  }

  /** Remote writes answered to the kernel that the owner has not confirmed yet, in order. */
  get unconfirmed(): Array<{ seq: number; offset: number; data: Buffer; unique: bigint }> {
    return [...this.#unconfirmed].map(([seq, w]) => ({ seq, ...w }));
  }

  /** A read, as reply parts; a sequential reader gets the next blocks fetched ahead, up to the end of the file. */
  async read(offset: number, size: number): Promise<Buffer[]> {
    if (this.backend.local) return this.use((h) => this.backend.read(h, offset, size));
    if (this.#silent) throw this.#silent;
    if (this.#writes.size) await this.drain();
    const fetch = (at: number) => () => this.use((h) => this.backend.read(h, at, size));
    const data = this.#cache.read(this.node, offset, size, fetch(offset));
    data.catch((e: PjError) => {
      if (e.code !== codes.TIMEOUT || this.#silent) return;
      this.#silent = e;
      void this.backend.answering().finally(() => (this.#silent = undefined));
    });
    if (offset === this.#nextOffset) {
      const end = this.node.attr?.size ?? Infinity;
      for (let i = 1, at = offset + size; i <= READ_AHEAD && at < end; i++, at += size) this.#cache.prefetch(this.node, at, size, fetch(at));
    }
    this.#nextOffset = offset + size;
    return data;
  }
}
