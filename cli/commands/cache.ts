// `pj cache [drop]`: this agent's cache of remote file data (size, hits), or emptied.
import type { Command } from 'commander';
import { PjError, codes } from '../../common/errors.js';
import type { DataCacheStats } from '../../fs-layer/data-cache.js';
import { askAgent, withAgentOptions } from '../agent-socket.js';
import { action, printJson } from '../output.js';

const MiB = 1 << 20;

export function register(program: Command): void {
  withAgentOptions(program.command('cache').description("this host's cache of remote file data; 'drop' empties it").argument('[drop]', 'empty the cache'))
    .option('--json', 'print as JSON')
    .action(action(async (drop: string | undefined, o) => {
      if (drop !== undefined && drop !== 'drop') throw new PjError(codes.USAGE, `unknown cache action '${drop}' (only 'drop')`);
      const s = (await askAgent(o, 'cache', { drop: drop === 'drop' })) as DataCacheStats;
      if (o.json) return printJson(s);
      process.stdout.write(`${(s.bytes / MiB).toFixed(1)} of ${(s.limitBytes / MiB).toFixed(0)} MiB in ${s.blocks} blocks; ${s.hits} hits, ${s.misses} misses\n`);
    }));
}
