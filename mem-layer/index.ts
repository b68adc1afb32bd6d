// The mem-layer's surface: a job's memory by content (scan, store), the pager
// that fills a restored job through userfaultfd, and the two sides of a
// lazy move (pre-copy rounds, the frozen source's memory, the destination's fill).
export { FrozenMemory } from './frozen-memory.js';
export { LazyFill, keeperSocket, type PageSources } from './lazy-fill.js';
export { frozenManifest, type TaskManifest } from './manifest.js';
export { precopy, type PrecopyResult, type StoreAt } from './precopy.js';
export { PAGE, HASH_BYTES, hashAt, hashesAt, hashPages, memoryRanges, readPages, scanPages, type PageScan } from './page-scan.js';
export { PageStore, type PageStoreStats } from './page-store.js';
export { Pager, type PagerStats } from './pager.js';
