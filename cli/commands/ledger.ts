// `pj ledger`: what each job moved to or from each host, as this host's agent counted it.
import type { Command } from 'commander';
import type { LedgerRow } from '../../migrator/index.js';
import { askAgent, withAgentOptions } from '../agent-socket.js';
import { action, printJson, printTable } from '../output.js';

const human = (n: number) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)}M` : n >= 1024 ? `${(n / 1024).toFixed(1)}K` : String(Math.round(n)));

export function register(program: Command): void {
  withAgentOptions(program.command('ledger').description('bytes and operations per job and target host (totals, and per second over 10 s)'))
    .option('--json', 'print as JSON')
    .action(action(async (o) => {
      const rows = (await askAgent(o, 'ledger')) as LedgerRow[];
      if (o.json) return printJson(rows);
      printTable(rows.map((r) => ({ ...r, bytes: human(r.bytes), 'bytes/s': human(r.bytesPerS), 'ops/s': r.opsPerS.toFixed(1) })),
        ['job', 'command', 'target', 'layer', 'ops', 'bytes', 'ops/s', 'bytes/s']);
    }));
}
