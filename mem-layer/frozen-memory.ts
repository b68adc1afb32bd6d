// The source's side of a lazy move: the frozen job's memory, read in place
// (process_vm_readv) for the destination's pager, its manifest (hashed once,
// at idle priority until the destination restored), and, once the destination holds every page, a
// copy into this host's page store, so that coming back costs only what changed.
// Tasks are named as CRIU's images and the pager name them: by pid inside the job's namespace.
import { PjError, codes } from '../common/errors.js';
import { frozenManifest, type TaskManifest } from './manifest.js';
import { hashPages, readPages } from './page-scan.js';
import type { PageStore } from './page-store.js';

const KEEP_BATCH = 4096;

export class FrozenMemory {
  #manifest: Promise<TaskManifest[]> | undefined;
  #restoring = true;

  /**
   * `hostPid`: each task's pid on this host, by its id in the job's namespace; `dir`: the lazy dump's
   * images (none for a copy a restarted manager found frozen: it serves pages by address only).
   */
  constructor(readonly hostPid: Map<number, number>, private readonly dir?: string) {
    this.manifest().catch(() => {}); // hashed from now on; observed by whoever asks for it
  }

  manifest(): Promise<TaskManifest[]> {
    if (!this.dir) return Promise.reject(new PjError(codes.PAGES_LOST, 'the manifest went with the manager that froze the job'));
    return (this.#manifest ??= frozenManifest(this.dir, this.hostPid, () => this.#restoring));
  }

  /** The destination restored the job: the manifest's hashing takes the CPU it needs from now on. */
  restored(): void {
    this.#restoring = false;
  }

  /** 4 KiB per address (u64 LE each) of task `id`. */
  read(id: number, addrs: Buffer): Buffer {
    const pid = this.hostPid.get(id);
    if (pid === undefined) throw new PjError(codes.USAGE, `no task ${id} in the frozen job`);
    return readPages(pid, addrs);
  }

  /** Puts the pages `store` lacks into it, as many as fit (PJ_ERR_PAGE_STORE_FULL ends it); returns how many. */
  async keep(store: PageStore): Promise<number> {
    let added = 0;
    for (const t of await this.manifest()) {
      const missing = store.missing(t.hashes);
      for (let b = 0; b < missing.length; b += KEEP_BATCH) {
        const addrs = Buffer.concat(missing.slice(b, b + KEEP_BATCH).map((i) => t.addrs.subarray(i * 8, (i + 1) * 8)));
        const data = this.read(t.id, addrs);
        try {
          added += store.put(hashPages(data), data);
        } catch (e) {
          if ((e as PjError).code === codes.PAGE_STORE_FULL) return added;
          throw e;
        }
        await new Promise((r) => setImmediate(r)); // others' requests between batches
      }
    }
    return added;
  }
}

