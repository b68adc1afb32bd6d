// The pager's surface (native/src/uffd-pager.cc): it listens where CRIU's
// `restore --lazy-pages` looks for its lazy-pages daemon, receives each
// restored task's userfaultfd, and installs the pages it is given, serving
// faults first. A fault on a page it was not given is reported, so that the
// page can be fetched (from this host's store, or from another host) and supplied.
// With a keeper (pager-keeper.ts), the userfaultfds outlive this process, and
// the next agent's pager adopts them.
import { EventEmitter } from 'node:events';
import type { PagerStats } from '../native/binding.js';
import { call, loadBinding } from '../native/loader.js';
import type { StoredPages } from './page-store.js';

export type { PagerStats } from '../native/binding.js';

export interface PagerEvents {
  task: [pid: number];
  fault: [pid: number, addr: number];
  gone: [pid: number];
  /** A page given by its place in the store did not match its hash there: fetch it elsewhere. */
  storeMiss: [pid: number, addr: number];
  /** The keeper does not answer: the job no longer outlives this pager. */
  keeperLost: [];
}

type OnEvent = (kind: number, pid: number, addr: number) => void;

export class Pager extends EventEmitter<PagerEvents> {
  readonly #handle: number;
  #stopped = false;
  #last: PagerStats | undefined;

  /**
   * Listens on `socketPath` (lazy-pages.socket in the images folder, for CRIU); `keeperPath`: where the
   * job's keeper listens ('' for none); `cpu`: the one CPU its thread runs on.
   */
  static listen(socketPath: string, keeperPath = '', cpu = -1): Pager {
    return new Pager((onEvent) => call((ctx) => loadBinding().pagerStart(socketPath, onEvent, ctx, cpu, keeperPath), socketPath), socketPath);
  }

  /** The pager for the tasks the keeper at `keeperPath` holds: a 'task' event for each comes at once. */
  static adopt(keeperPath: string, cpu = -1): Pager {
    return new Pager((onEvent) => call((ctx) => loadBinding().pagerAdopt(keeperPath, onEvent, ctx, cpu), keeperPath), '');
  }

  private constructor(start: (onEvent: OnEvent) => number, readonly socketPath: string) {
    super();
    this.#handle = start((kind, pid, addr) => {
      if (kind === 0) this.emit('task', pid);
      else if (kind === 1) this.emit('fault', pid, addr);
      else if (kind === 2) this.emit('gone', pid);
      else if (kind === 3) this.emit('storeMiss', pid, addr);
      else this.emit('keeperLost');
    });
  }

  /**
   * Pages of task `pid` (page-aligned addresses; 4 KiB of `data` each). In the background they are
   * installed as fast as the thread can; held back (`background` false), only when faulted.
   * `remote`: they came from another host (the fault figures tell those apart).
   */
  supply(pid: number, addrs: BigUint64Array, data: Buffer, background = true, remote = false): void {
    loadBinding().pagerSupply(this.#handle, pid, Buffer.from(addrs.buffer, addrs.byteOffset, addrs.byteLength), data, background, remote);
  }

  /**
   * Pages of task `pid` that the page store holds, by place (`PageStore.locate`): the pager's thread
   * reads each, checks it against its hash and installs it; a fault on one never waits for JavaScript.
   * False when the task has not arrived yet.
   */
  supplyStored(pid: number, addrs: BigUint64Array, at: StoredPages): boolean {
    return loadBinding().pagerSupplyStored(this.#handle, pid, Buffer.from(addrs.buffer, addrs.byteOffset, addrs.byteLength),
      Buffer.from(at.fds.buffer, at.fds.byteOffset, at.fds.byteLength), Buffer.from(at.offsets.buffer, at.offsets.byteOffset, at.offsets.byteLength), at.hashes);
  }

  /** What the pager did (after stop: what it had done). */
  stats(): PagerStats {
    if (!this.#stopped) this.#last = loadBinding().pagerStats(this.#handle);
    return this.#last!;
  }

  /**
   * Ends the thread and closes the userfaultfds (the keeper's too): a task faulting on a page never
   * supplied then reads zeros. Only once every page is there, or the task is ended.
   */
  stop(): void {
    if (this.#stopped) return;
    this.stats();
    this.#stopped = true;
    loadBinding().pagerStop(this.#handle);
  }
}
