// `pj ledger`: what each job moved to or from each host, as this host's agent counted it.
import type { Command } from 'commander';
import type { LedgerRow } from '../../migrator/index.js';
import { askAgent, withAgentOptions } from '../agent-socket.js';
import { action, printJson, printTable } from '../output.js';
import { human } from '../units.js';


export function register(program: Command): void {
  withAgentOptions(program.command('ledger').description('bytes and operations per job and target host (totals, and per second over 10 s)'))
    .option('--json', 'print as JSON')
    .action(action(async (o) => {
      const rows = (await askAgent(o, 'ledger')) as LedgerRow[];
      if (o.json) return printJson(rows);
      printTable(rows.map((r) => ({ ...r, bytes: human(r.bytes), 'bytes/s': human(r.bytesPerS), 'ops/s': r.opsPerS.toFixed(1) })),
        ['job', 'id', 'command', 'target', 'layer', 'ops', 'bytes', 'ops/s', 'bytes/s']);
    }));
}
