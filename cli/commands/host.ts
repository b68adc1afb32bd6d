// `pj host drain|undrain HOST`: empty a host of its movable jobs (scaling in,
// maintenance) and keep new moves away from it, or end that.
import type { Command } from 'commander';
import type { DrainResult } from '../../migrator/index.js';
import { askAgent, withAgentOptions } from '../agent-socket.js';
import { action, printJson } from '../output.js';

export function register(program: Command): void {
  const host = program.command('host').description('a host\'s part in the cluster: drain it, undrain it');
  withAgentOptions(host.command('drain').description('move every movable job off HOST and none onto it; pinned jobs stay and are listed').argument('<host>'))
    .option('--timeout <s>', 'how long to wait for the jobs to leave (0: do not wait)', parseFloat, 120)
    .option('--json', 'print as JSON')
    .action(action(async (name: string, o) => {
      const r = (await askAgent(o, 'drain', { host: name, on: true, waitMs: o.timeout * 1000 }, o.timeout * 1000 + 10_000)) as DrainResult;
      if (r.remaining.length && o.timeout > 0) process.exitCode = 1; // with --json too
      if (o.json) return printJson(r);
      process.stdout.write(`${r.host} drained: ${r.moved.length} jobs moved off${r.moved.length ? ` (${r.moved.join(', ')})` : ''}`
        + `${r.pinned.length ? `; pinned, staying: ${r.pinned.join(', ')}` : ''}${r.remaining.length ? `; still there: ${r.remaining.join(', ')}` : ''}\n`);
    }));
  withAgentOptions(host.command('undrain').description('let jobs move to HOST again').argument('<host>'))
    .option('--json', 'print as JSON')
    .action(action(async (name: string, o) => {
      const r = (await askAgent(o, 'drain', { host: name, on: false })) as DrainResult;
      if (o.json) return printJson(r);
      process.stdout.write(`${r.host} takes jobs again\n`);
    }));
}
