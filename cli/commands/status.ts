// `pj status`: this host's agent, and the calls it made to each host over the mesh.
import type { Command } from 'commander';
import { askAgent, withAgentOptions } from '../agent-socket.js';
import { action, printJson, printTable } from '../output.js';

interface AgentStatus { name: string; address: string; port: number; pid: number; version: string; uptimeS: number; calls: Array<{ host: string; method: string; calls: number }> }

export function register(program: Command): void {
  withAgentOptions(program.command('status').description("this host's agent and the calls it made to other hosts"))
    .option('--json', 'print as JSON')
    .action(action(async (o) => {
      const s = (await askAgent(o, 'status')) as AgentStatus;
      if (o.json) return printJson(s);
      process.stdout.write(`${s.name}: agent pid ${s.pid}, ${s.address}:${s.port}, version ${s.version}, up ${s.uptimeS} s\n`);
      if (s.calls.length) printTable(s.calls, ['host', 'method', 'calls']);
    }));
}
