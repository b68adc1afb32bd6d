// `pj doctor`: what this machine offers PicoJump, and how to fix what is missing.
import type { Command } from 'commander';
import { runDoctor } from '../../manager/doctor.js';
import { agentSocket, withAgentOptions } from '../agent-socket.js';
import { action, printJson, printTable } from '../output.js';

export function register(program: Command): void {
  withAgentOptions(program.command('doctor')
    .description('check kernel features and tools, with a fix for each failure; and the /pj path of a running agent'))
    .option('--json', 'print as JSON')
    .action(action(async (o) => {
      const checks = await runDoctor(agentSocket(o));
      if (o.json) printJson(checks);
      else printTable(checks.map((c) => ({ ...c, fix: c.fix ?? '' })), ['name', 'status', 'detail', 'fix']);
      if (checks.some((c) => c.status === 'fail')) process.exitCode = 1;
    }));
}
