// `pj cache [drop]`: this agent's cache of remote file data (size, hits), or
// emptied; and its page store (jobs' pages kept by content for moves).
import type { Command } from 'commander';
import { PjError, codes } from '../../common/errors.js';
import type { DataCacheStats } from '../../fs-layer/data-cache.js';
import type { PageStoreStats } from '../../mem-layer/index.js';
import { askAgent, withAgentOptions } from '../agent-socket.js';
import { action, printJson } from '../output.js';

const MiB = 1 << 20;

export function register(program: Command): void {
  withAgentOptions(program.command('cache').description("this host's cache of remote file data; 'drop' empties it").argument('[drop]', 'empty the cache'))
    .option('--json', 'print as JSON')
    .action(action(async (drop: string | undefined, o) => {
      if (drop !== undefined && drop !== 'drop') throw new PjError(codes.USAGE, `unknown cache action '${drop}' (only 'drop')`);
      const s = (await askAgent(o, 'cache', { drop: drop === 'drop' })) as DataCacheStats;
      const p = (await askAgent(o, 'page-store', {})) as PageStoreStats;
      if (o.json) return printJson({ ...s, pageStore: p });
      process.stdout.write(`file data: ${(s.bytes / MiB).toFixed(1)} of ${(s.limitBytes / MiB).toFixed(0)} MiB in ${s.blocks} blocks; ${s.hits} hits, ${s.misses} misses\n`);
      process.stdout.write(`page store: ${(p.bytes / MiB).toFixed(1)} of ${(p.limitBytes / MiB).toFixed(0)} MiB, ${p.pages} pages; ${p.evictedSegments} segments evicted\n`);
    }));
}
