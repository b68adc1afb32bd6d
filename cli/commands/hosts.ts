// `pj hosts`: cluster membership as etcd sees it.
import type { Command } from 'commander';
import type { HostView } from '../../manager/cluster-state.js';
import { askAgent, withAgentOptions } from '../agent-socket.js';
import { action, printJson, printTable } from '../output.js';
import { human } from '../units.js';
import { optionsText } from '../../manager/exports.js';

export function register(program: Command): void {
  withAgentOptions(program.command('hosts').description('hosts of the cluster: up or down, drained, load, price, page-store use'))
    .option('--json', 'print as JSON')
    .action(action(async (o) => {
      const hosts = (await askAgent(o, 'hosts')) as HostView[];
      if (o.json) return printJson(hosts);
      printTable(hosts.map((h) => ({
        host: h.name, state: h.state + (h.drained ? ' (drained)' : '') + (h.use?.mount && h.use.mount !== 'ok' ? ` (/pj ${h.use.mount})` : ''), address: `${h.address}:${h.port}`, pid: h.pid,
        exports: h.exports.map((e) => `${e.name}${optionsText(e)}`).join(' ') || '-', version: h.version,
        load: h.use ? `${h.use.load.toFixed(2)}/${h.maxLoad}` : '-', jobs: h.use?.jobs ?? '-', price: h.price ?? '-',
        'page store': h.use ? `${human(h.use.pageStore.bytes)}/${human(h.use.pageStore.limit)}` : '-',
      })), ['host', 'state', 'address', 'pid', 'load', 'jobs', 'price', 'page store', 'exports', 'version']);
    }));
}
