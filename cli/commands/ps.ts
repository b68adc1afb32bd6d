// `pj ps [--json]`: every job of the cluster, where it runs and what it uses.
import type { Command } from 'commander';
import type { JobView } from '../../migrator/index.js';
import { askAgent, withAgentOptions } from '../agent-socket.js';
import { action, printJson, printTable } from '../output.js';

const mib = (b: number) => `${(b / (1 << 20)).toFixed(1)}M`;

export function register(program: Command): void {
  withAgentOptions(program.command('ps').description('the jobs of the cluster'))
    .option('--json', 'print as JSON')
    .action(action(async (o) => {
      const jobs = (await askAgent(o, 'ps', {}, 10_000)) as JobView[];
      if (o.json) return printJson(jobs);
      printTable(jobs.map((j) => ({
        id: j.id, name: j.name, host: j.host, pid: j.state === 'running' ? j.pid : '-', state: j.state === 'running' ? `${j.stopped ? 'stopped' : 'running'}${j.outputError ? ' (output lost: folder full)' : ''}${j.takenBackFrom ? ` (taken back: ${j.takenBackFrom} lost it in a move)` : ''}` : `exited (${j.exit})`,
        rss: j.usage ? mib(j.usage.rssBytes) : '-', cpu: j.usage ? `${j.usage.cpuS.toFixed(1)}s` : '-', started: j.startedAt.replace('T', ' ').slice(0, 19), moves: j.moves,
      })), ['id', 'name', 'host', 'pid', 'state', 'rss', 'cpu', 'started', 'moves']);
    }));
}
