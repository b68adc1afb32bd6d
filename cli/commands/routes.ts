// `pj routes`: where jobs' connections go (the cluster's routes, from etcd), and
// the connections this host holds for jobs (tunnels: those used from other hosts).
import type { Command } from 'commander';
import { routeLimits, type Route } from '../../net-layer/routes.js';
import { askAgent, withAgentOptions } from '../agent-socket.js';
import { action, printJson, printTable } from '../output.js';

export function register(program: Command): void {
  withAgentOptions(program.command('routes').description('the routes of jobs\' connections (CIDR or name -> host), and the connections this host holds'))
    .option('--json', 'print as JSON')
    .action(action(async (o) => {
      const r = (await askAgent(o, 'routes')) as { routes: Route[]; connections: number; tunnels: number };
      if (o.json) return printJson(r);
      printTable(r.routes.map((x) => ({ target: x.target, host: x.host, for: routeLimits(x) || 'every job' })), ['target', 'host', 'for']);
      process.stdout.write(`(anything else: from the job's own host)\nconnections held here: ${r.connections}, of which ${r.tunnels} used through tunnels from other hosts\n`);
    }));
}
