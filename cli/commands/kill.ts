// `pj kill [-s SIG] JOB`, `pj wait JOB`, `pj rm JOB…`: signal a job wherever it runs; wait for it to end and exit
// with its status; forget jobs that have ended.
import type { Command } from 'commander';
import { constants } from 'node:os';
import { PjError, codes } from '../../common/errors.js';
import type { JobRecord } from '../../migrator/index.js';
import { askAgent, withAgentOptions } from '../agent-socket.js';
import { action } from '../output.js';

const WAIT_POLL_MS = 200;

function signalName(s: string): string {
  const name = /^\d+$/.test(s) ? Object.entries(constants.signals).find(([, n]) => n === Number(s))?.[0] : s.toUpperCase().replace(/^(SIG)?/, 'SIG');
  if (!name || !(name in constants.signals)) throw new PjError(codes.USAGE, `unknown signal '${s}'`);
  return name;
}

export function register(program: Command): void {
  withAgentOptions(program.command('kill').description('send a signal to a job (default SIGTERM)').argument('<job>', 'job id, id prefix or name'))
    .option('-s, --signal <sig>', 'signal name or number', 'TERM')
    .action(action(async (job: string, o) => {
      await askAgent(o, 'kill', { id: job, signal: signalName(o.signal) });
    }));
  withAgentOptions(program.command('rm').description('forget jobs that have ended').argument('<jobs...>', 'job ids, id prefixes or names'))
    .action(action(async (refs: string[], o) => {
      for (const ref of refs) process.stdout.write(`${((await askAgent(o, 'rm', { id: ref })) as JobRecord).id}\n`);
    }));
  withAgentOptions(program.command('wait').description('wait for a job to end; exit with its status').argument('<job>', 'job id, id prefix or name'))
    .action(action(async (job: string, o) => {
      for (;;) {
        const rec = (await askAgent(o, 'job', { id: job })) as JobRecord;
        if (rec.state === 'exited') {
          process.stdout.write(`${rec.exit}\n`);
          const [how, n] = (rec.exit ?? '').split(' ');
          process.exitCode = how === 'exit' ? Number(n) : how === 'signal' ? 128 + Number(n) : 1; // 'unknown': its first process died unrecorded
          return;
        }
        await new Promise((r) => setTimeout(r, WAIT_POLL_MS));
      }
    }));
}
