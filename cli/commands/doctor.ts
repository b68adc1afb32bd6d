// `pj doctor`: what this machine offers PicoJump, and how to fix what is missing.
import type { Command } from 'commander';
import { runDoctor } from '../../manager/doctor.js';
import { action, printJson, printTable } from '../output.js';

export function register(program: Command): void {
  program.command('doctor')
    .description('check kernel features and tools, with a fix for each failure')
    .option('--json', 'print as JSON')
    .action(action(async (o) => {
      const checks = await runDoctor();
      if (o.json) printJson(checks);
      else printTable(checks.map((c) => ({ ...c, fix: c.fix ?? '' })), ['name', 'status', 'detail', 'fix']);
      if (checks.some((c) => c.status === 'fail')) process.exitCode = 1;
    }));
}
