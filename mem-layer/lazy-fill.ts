// The destination's side of a lazy move: a pager on lazy-pages.socket in the
// images folder, for `criu restore --lazy-pages`. Every page the dump left out
// (its images say which) is taken from this host's page store when the
// source's manifest names a hash the store holds, otherwise fetched: from the
// frozen source by address, or, once the source is gone, by hash from another
// host that holds the job's pages. A fault is served at once; the rest comes in
// the background once the restore is done (before, CRIU's restorer is still
// moving the task's mappings into place), a few batches in flight, the pages
// no other host holds first: the sooner the source is not their only holder,
// the less its loss costs. Each page is asked for once. `allLocal` settles
// when every page is here. The job's userfaultfds are kept by a keeper of their
// own too (pager-keeper.ts): when this agent dies, the next one adopts them.
import { join } from 'node:path';
import { PjError, codes } from '../common/errors.js';
import type { Log } from '../common/log.js';
import { dumpedTasks, lazyRanges } from './criu-images.js';
import type { TaskManifest } from './manifest.js';
import { HASH_BYTES, PAGE } from './page-scan.js';
import type { PageStore } from './page-store.js';
import { Pager } from './pager.js';
import { startPagerKeeper } from './pager-keeper.js';

const BATCH_PAGES = 128;
const IN_FLIGHT = 2;
/** How long pages may wait for a source that does not answer (its manager restarting) and no other holder has them. */
const SOURCE_DEADLINE_MS = 10_000;
const RETRY_MS = 500;
/** Pages of the manifest taken in, or handed over from the store, between two looks at the faults. */
const YIELD_PAGES = 2048;
/** Hashes per question to the other holders. */
const SOLE_QUERY = 65_536;

/** Where the keeper of a lazy restore's userfaultfds listens: in its images folder. */
export const keeperSocket = (dir: string): string => join(dir, 'pager-keeper.socket');

/** Where the pages a store lacks come from. */
export interface PageSources {
  /** The frozen source's manifest. */
  manifest(): Promise<TaskManifest[]>;
  /** Pages of task `id` from the frozen source, by address (u64 LE each): 4 KiB each, in order. */
  fromSource(id: number, addrs: Buffer): Promise<Buffer>;
  /** Pages by hash (16 bytes each) from another host that holds them: 4 KiB each, in order. */
  fromHolders(hashes: Buffer): Promise<Buffer>;
  /** Positions of the hashes (16 bytes each) that no host but the source holds. */
  onlyAtSource(hashes: Buffer): Promise<number[]>;
}

/** Pages of one task to fill, by address. */
interface Batch { id: number; addrs: number[] }

export class LazyFill {
  readonly #pager: Pager;
  readonly #ranges: Map<number, Array<{ vaddr: number; pages: number }>>;
  readonly #requested = new Map<number, Set<number>>();
  readonly #queue: Batch[] = [];
  #total: number;
  #hashes = new Map<number, Map<number, Buffer>>();
  #unpin: (() => void) | undefined;
  #sourceDown = false;
  #inFlight = 0;
  #background = false;
  #watch: NodeJS.Timeout | undefined;
  #failure: Error | undefined;
  #settle!: { resolve: () => void; reject: (e: Error) => void };
  /** Resolves once every page the dump left out is installed; rejects (PJ_ERR_PAGES_LOST) if one cannot be had. */
  readonly allLocal: Promise<void>;
  pagesFromStore = 0;
  pagesFetched = 0;
  bytesFetched = 0;

  /** `adopt`: the restore was a dead agent's; its tasks come from their keeper. */
  constructor(readonly dir: string, private readonly sources: PageSources, private readonly store: PageStore | undefined, private readonly log: Log, adopt = false) {
    this.#ranges = new Map(dumpedTasks(dir).map((id) => [id, lazyRanges(dir, id)]));
    this.#total = [...this.#ranges.values()].flat().reduce((n, r) => n + r.pages, 0);
    this.allLocal = new Promise((resolve, reject) => (this.#settle = { resolve, reject }));
    this.allLocal.catch(() => {}); // observed by whoever waits for it
    const keeper = keeperSocket(dir);
    if (adopt) this.#pager = Pager.adopt(keeper);
    else {
      startPagerKeeper(keeper, log);
      this.#pager = Pager.listen(join(dir, 'lazy-pages.socket'), keeper);
    }
    this.#pager.on('keeperLost', () => this.log.warn({ op: 'lazy-fill', dir }, 'the pager\'s keeper does not answer: the job would not outlive this agent'));
    this.#pager.on('task', (id) => {
      for (const r of this.#ranges.get(id) ?? []) {
        for (let p = 0; p < r.pages; p += BATCH_PAGES) {
          this.#queue.push({ id, addrs: Array.from({ length: Math.min(BATCH_PAGES, r.pages - p) }, (_, k) => r.vaddr + (p + k) * PAGE) });
        }
      }
      this.#pump();
    });
    this.#pager.on('fault', (id, addr) => void this.#get(id, [addr], true));
    this.#pager.on('gone', (id) => {
      // A process that ended (a short-lived child) needs none of its pages: the pager forgot what it
      // installed for it, and the fill forgets what it still had to.
      this.#total -= (this.#ranges.get(id) ?? []).reduce((n, r) => n + r.pages, 0);
      this.#ranges.delete(id);
      this.#queue.splice(0, this.#queue.length, ...this.#queue.filter((b) => b.id !== id));
    });
    this.#pager.on('storeMiss', (id, addr) => {
      // The store's copy is damaged: it forgets it, and the page is fetched like any the store lacks.
      this.pagesFromStore--;
      const hash = this.#hashes.get(id)?.get(addr);
      if (hash) this.store?.forget(hash);
      this.#requested.get(id)?.delete(addr);
      void this.#get(id, [addr], true);
    });
    if (this.#total === 0) this.#settle.resolve();
  }

  get pagesTotal(): number { return this.#total; }

  /**
   * `allLocal`, or a failure once no page was installed for `stallMs` while some are missing: before
   * a commit, a move gives up rather than wait on a fill that no longer moves.
   */
  allLocalUnlessStalled(stallMs: number): Promise<void> {
    let installed = -1;
    let since = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const stalled = new Promise<never>((_, reject) => {
      timer = setInterval(() => {
        const now = this.#pager.stats().installed;
        if (now !== installed) [installed, since] = [now, Date.now()];
        else if (Date.now() - since >= stallMs) reject(new PjError(codes.MIGRATION_ABORTED, `no page arrived for ${stallMs / 1000} s (${this.#total - now} of ${this.#total} missing)`));
      }, 250);
    });
    return Promise.race([this.allLocal, stalled]).finally(() => clearInterval(timer));
  }

  /** What the pager did: pages installed, faults and their service times by where the page was. */
  stats() { return this.#pager.stats(); }

  /** The hashes of the pages to come, and the store's pins on them; without them, every page comes from the source. */
  async #takeManifest(): Promise<void> {
    try {
      const m = await this.sources.manifest();
      // In steps, so that faults are served in between: the job may run already.
      const unpins: Array<() => void> = [];
      this.#unpin = () => unpins.forEach((u) => u());
      for (const t of m) {
        const byAddr = new Map<number, Buffer>();
        this.#hashes.set(t.id, byAddr);
        for (let i = 0; i * 8 < t.addrs.length; i += YIELD_PAGES) {
          const hashes = t.hashes.subarray(i * HASH_BYTES, (i + YIELD_PAGES) * HASH_BYTES);
          if (this.store) unpins.push(this.store.pin(hashes));
          for (let k = 0; k * HASH_BYTES < hashes.length; k++) byAddr.set(Number(t.addrs.readBigUInt64LE((i + k) * 8)), hashes.subarray(k * HASH_BYTES, (k + 1) * HASH_BYTES));
          await new Promise((r) => setImmediate(r));
        }
      }
    } catch (e) {
      this.log.warn({ op: 'lazy-fill', err: (e as Error).message }, 'no manifest from the source: every page comes from it');
    }
  }

  /** The restore is done: the mappings are where the pages go. */
  startBackground(): void {
    void this.#takeManifest().then(() => this.#allFromStore()).then(() => this.#soleFirst()).then(() => {
      this.#background = true;
      this.#pump();
      this.#check();
    });
    const since = Date.now();
    const stall = setInterval(() => {
      const s = this.#pager.stats();
      this.log.warn({ op: 'lazy-stall', seconds: Math.round((Date.now() - since) / 1000), total: this.#total, queued: this.#queue.length, inFlight: this.#inFlight, installed: s.installed, waiting: s.waiting }, 'pages still missing');
    }, 5000);
    this.allLocal.finally(() => clearInterval(stall)).catch(() => {});
  }

  /**
   * Hands the pager every queued page the store holds before anything is fetched, so that a fault on
   * one is served by the pager's thread alone; the queue keeps the others. Yields now and then to faults.
   */
  async #allFromStore(): Promise<void> {
    if (!this.store) return;
    const rest: Batch[] = [];
    for (const id of new Set(this.#queue.map((b) => b.id))) {
      const asked = this.#requested.get(id) ?? this.#requested.set(id, new Set()).get(id)!;
      const todo = this.#queue.filter((b) => b.id === id).flatMap((b) => b.addrs).filter((a) => !asked.has(a));
      const left: number[] = [];
      for (let i = 0; i < todo.length; i += YIELD_PAGES) {
        const part = todo.slice(i, i + YIELD_PAGES);
        const missing = new Set(this.#fromStore(id, part));
        for (const a of part) {
          if (missing.has(a)) left.push(a);
          else asked.add(a);
        }
        await new Promise((r) => setImmediate(r));
      }
      for (let i = 0; i < left.length; i += BATCH_PAGES) rest.push({ id, addrs: left.slice(i, i + BATCH_PAGES) });
    }
    this.#queue.splice(0, this.#queue.length, ...rest);
  }

  /** Reorders the queue: the pages that neither this host's store nor another holder has come first. */
  async #soleFirst(): Promise<void> {
    // The pages another host may hold: those with a known hash (the queue keeps only what this host's store lacks).
    const asked: Array<{ id: number; addr: number; hash: Buffer }> = [];
    for (const b of this.#queue) {
      const byAddr = this.#hashes.get(b.id);
      for (const addr of b.addrs) {
        const hash = byAddr?.get(addr);
        if (hash) asked.push({ id: b.id, addr, hash });
      }
    }
    const only = new Map<number, Set<number>>();
    try {
      for (let at = 0; at < asked.length; at += SOLE_QUERY) {
        const part = asked.slice(at, at + SOLE_QUERY);
        for (const i of await this.sources.onlyAtSource(Buffer.concat(part.map((p) => p.hash)))) {
          (only.get(part[i].id) ?? only.set(part[i].id, new Set()).get(part[i].id)!).add(part[i].addr);
        }
      }
    } catch (e) {
      this.log.warn({ op: 'lazy-fill', err: (e as Error).message }, 'could not tell which pages only the source holds');
      return;
    }
    const sole: Batch[] = [];
    const rest: Batch[] = [];
    for (const b of this.#queue) {
      const byAddr = this.#hashes.get(b.id);
      const first = new Set(b.addrs.filter((a) => only.get(b.id)?.has(a) || !byAddr?.has(a)));
      if (first.size) sole.push({ id: b.id, addrs: [...first] });
      if (first.size < b.addrs.length) rest.push({ id: b.id, addrs: b.addrs.filter((a) => !first.has(a)) });
    }
    this.#queue.splice(0, this.#queue.length, ...sole, ...rest);
  }

  #pump(): void {
    while (this.#background && this.#inFlight < IN_FLIGHT && this.#queue.length) {
      const b = this.#queue.shift()!;
      this.#inFlight++;
      void this.#get(b.id, b.addrs, false).finally(() => {
        this.#inFlight--;
        this.#pump();
        this.#check();
      });
    }
  }

  async #get(id: number, all: number[], urgent: boolean): Promise<void> {
    // Store reads are synchronous: a background batch first lets others' requests (the resume) through.
    if (!urgent) await new Promise((r) => setImmediate(r));
    const asked = this.#requested.get(id) ?? this.#requested.set(id, new Set()).get(id)!;
    let addrs = all.filter((a) => !asked.has(a));
    if (!addrs.length || this.#failure) return;
    for (const a of addrs) asked.add(a);
    try {
      addrs = this.#fromStore(id, addrs);
      if (!addrs.length) return;
      const list = Buffer.from(BigUint64Array.from(addrs.map(BigInt)).buffer);
      const data = await this.#fetch(id, addrs, list);
      if (data.length !== addrs.length * PAGE) throw new PjError(codes.PROTOCOL, `${data.length / PAGE} pages came for ${addrs.length} asked`);
      this.pagesFetched += addrs.length;
      this.bytesFetched += data.length;
      this.#supply(id, list, data, true);
    } catch (e) {
      this.#failure = new PjError(codes.PAGES_LOST, `pages of task ${id} could not be had: ${(e as Error).message}`, { cause: e });
      this.#settle.reject(this.#failure);
      clearInterval(this.#watch);
    }
  }

  /** Hands the pager where the store holds pages of `addrs` (its thread reads them); returns the others. */
  #fromStore(id: number, addrs: number[]): number[] {
    const byAddr = this.#hashes.get(id);
    if (!this.store || !byAddr) return addrs;
    const known = addrs.filter((a) => byAddr.has(a));
    if (!known.length) return addrs;
    const { found, at } = this.store.locate(Buffer.concat(known.map((a) => byAddr.get(a)!)));
    if (!found.length || !this.#pager.supplyStored(id, BigUint64Array.from(found, (i) => BigInt(known[i])), at)) return addrs;
    this.pagesFromStore += found.length;
    const have = new Set(found.map((i) => known[i]));
    return addrs.filter((a) => !have.has(a));
  }

  /** From the frozen source; when it does not answer, by hash from the other holders; until a deadline. */
  async #fetch(id: number, addrs: number[], list: Buffer): Promise<Buffer> {
    const deadline = Date.now() + SOURCE_DEADLINE_MS;
    const byAddr = this.#hashes.get(id);
    const hashes = addrs.map((a) => byAddr?.get(a));
    const fromSource = async () => {
      try {
        const data = await this.sources.fromSource(id, list);
        this.#sourceDown = false;
        return data;
      } catch (e) {
        if (!this.#sourceDown) this.log.warn({ op: 'lazy-fill', err: (e as Error).message }, 'the source does not answer: pages come from the other holders, if any');
        this.#sourceDown = true;
        throw e;
      }
    };
    const fromHolders = async () => {
      if (hashes.some((h) => !h)) throw new PjError(codes.PAGES_LOST, 'the source did not say which pages these are');
      return this.sources.fromHolders(Buffer.concat(hashes as Buffer[], addrs.length * HASH_BYTES));
    };
    for (;;) {
      let last: Error | undefined;
      for (const from of this.#sourceDown ? [fromHolders, fromSource] : [fromSource, fromHolders]) {
        try {
          return await from();
        } catch (e) {
          last ??= e as Error;
        }
      }
      if (Date.now() >= deadline) throw last!;
      await new Promise((r) => setTimeout(r, RETRY_MS));
    }
  }

  #supply(id: number, addrs: Buffer, data: Buffer, remote: boolean): void {
    this.#pager.supply(id, new BigUint64Array(addrs.buffer, addrs.byteOffset, addrs.length / 8), data, true, remote);
  }

  /** Once every batch has arrived, watches the pager until the last pages are installed. */
  #check(): void {
    if (this.#queue.length || this.#inFlight || this.#watch || !this.#background || this.#failure) return;
    this.#watch = setInterval(() => {
      const s = this.#pager.stats();
      if (this.#queue.length || this.#inFlight || s.waiting || s.installed < this.#total) return;
      clearInterval(this.#watch);
      this.#settle.resolve();
    }, 10);
  }

  stop(): void {
    clearInterval(this.#watch);
    this.#unpin?.();
    this.#unpin = undefined;
    this.#pager.stop();
  }
}
