// The destination's side of a post-copy move: a pager on lazy-pages.socket in
// the images folder, for `criu restore --lazy-pages`. A fault is fetched from
// the source at once; once the restore is done (before, CRIU's restorer is
// still moving the task's mappings into place), the pages the dump left out
// (from the images) are fetched in the background, a few batches in flight.
// Each page is asked for once. `allLocal` settles when every page is here.
import { PjError, codes } from '../common/errors.js';
import type { Log } from '../common/log.js';
import { dumpedTasks, lazyRanges } from './criu-images.js';
import { PAGE } from './page-scan.js';
import { Pager } from './pager.js';
import { join } from 'node:path';

const BATCH_PAGES = 256;
const IN_FLIGHT = 4;

/** Fetches pages of task `id` (addresses u64 LE): 4 KiB each, in order. */
export type FetchPages = (id: number, addrs: Buffer) => Promise<Buffer>;

export class LazyFill {
  readonly #pager: Pager;
  readonly #requested = new Map<number, Set<number>>();
  readonly #queue: Array<{ id: number; addrs: number[] }> = [];
  readonly #total: number;
  #inFlight = 0;
  #background = false;
  #watch: NodeJS.Timeout | undefined;
  #failure: Error | undefined;
  #settle!: { resolve: () => void; reject: (e: Error) => void };
  /** Resolves once every page the dump left out is installed; rejects (PJ_ERR_PAGES_LOST) if one cannot be fetched. */
  readonly allLocal: Promise<void>;
  bytesFetched = 0;
  faultsFetched = 0;

  constructor(readonly dir: string, private readonly fetch: FetchPages, private readonly log: Log) {
    const tasks = dumpedTasks(dir);
    const ranges = new Map(tasks.map((id) => [id, lazyRanges(dir, id)]));
    this.#total = [...ranges.values()].flat().reduce((n, r) => n + r.pages, 0);
    this.allLocal = new Promise((resolve, reject) => (this.#settle = { resolve, reject }));
    this.allLocal.catch(() => {}); // observed by whoever waits for it
    this.#pager = new Pager(join(dir, 'lazy-pages.socket'));
    this.#pager.on('task', (id) => {
      for (const r of ranges.get(id) ?? []) {
        for (let p = 0; p < r.pages; p += BATCH_PAGES) {
          this.#queue.push({ id, addrs: Array.from({ length: Math.min(BATCH_PAGES, r.pages - p) }, (_, k) => r.vaddr + (p + k) * PAGE) });
        }
      }
      this.#pump();
    });
    this.#pager.on('fault', (id, addr) => {
      this.faultsFetched++;
      void this.#get(id, [addr], true);
    });
    if (this.#total === 0) this.#settle.resolve();
  }

  get pagesTotal(): number { return this.#total; }

  /** The restore is done: the mappings are where the pages go. */
  startBackground(): void {
    this.#background = true;
    this.#pump();
    const since = Date.now();
    const stall = setInterval(() => {
      const s = this.#pager.stats();
      this.log.warn({ op: 'lazy-stall', seconds: Math.round((Date.now() - since) / 1000), total: this.#total, queued: this.#queue.length, inFlight: this.#inFlight, ...s }, 'pages still missing');
    }, 5000);
    this.allLocal.finally(() => clearInterval(stall)).catch(() => {});
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
    const asked = this.#requested.get(id) ?? this.#requested.set(id, new Set()).get(id)!;
    const addrs = all.filter((a) => !asked.has(a));
    if (!addrs.length || this.#failure) return;
    for (const a of addrs) asked.add(a);
    const list = BigUint64Array.from(addrs.map(BigInt));
    try {
      const data = await this.fetch(id, Buffer.from(list.buffer));
      this.bytesFetched += data.length;
      this.#pager.supply(id, list, data, true);
      if (urgent) this.log.debug({ op: 'page-fault', task: id, addr: addrs[0].toString(16) }, 'fetched a faulted page');
    } catch (e) {
      this.#failure = new PjError(codes.PAGES_LOST, `pages of task ${id} could not be fetched: ${(e as Error).message}`, { cause: e });
      this.#settle.reject(this.#failure);
      clearInterval(this.#watch);
    }
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
    this.#pager.stop();
  }
}
