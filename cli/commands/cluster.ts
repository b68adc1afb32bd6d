// `pj cluster up|down|status|exec|start|stop`: a simulated cluster of hosts on
// this machine, made of namespaces (see manager/sim-cluster/).
import type { Command } from 'commander';
import { PjError, codes } from '../../common/errors.js';
import { startAgent, stopAgent, waitAgent } from '../../manager/sim-cluster/agents.js';
import { clusterDown } from '../../manager/sim-cluster/down.js';
import { execOnHost } from '../../manager/sim-cluster/exec.js';
import { clusterDir, findHost, readClusterFile, writeClusterFile } from '../../manager/sim-cluster/layout.js';
import { clusterStatus } from '../../manager/sim-cluster/status.js';
import { clusterUp } from '../../manager/sim-cluster/up.js';
import { action, printJson, printTable } from '../output.js';
import { parseRoute } from '../../net-layer/index.js';

const collect = (v: string, prev: string[]) => [...prev, v];
const dirOption = ['--cluster-dir <dir>', 'state of the simulated cluster (default $PJ_CLUSTER_DIR or /var/lib/picojump/cluster)'] as const;

export function register(program: Command): void {
  const cluster = program.command('cluster').description('a simulated cluster of hosts on this machine');

  cluster.command('up')
    .description('build hosts h1..hN (namespaces), one etcd, one agent per host')
    .option('--hosts <n>', 'number of hosts', (v) => parseInt(v, 10), 3)
    .option('--export <name=path[:options]>', 'export on every host (default data=/srv/data:rw,no_root_squash; options as in pj agent --export; repeatable)', collect, [])
    .option('--device <name=path>', 'a character device every host offers as /pj/<host>/<name>, when it is there (repeatable)', collect, [])
    .option('--name <name>', 'prefix of the namespaces', 'pj')
    .option('--route <target=host>', 'a route for jobs\' connections: CIDR=HOST or NAME=HOST (repeatable; see pj agent --route)', collect, [])
    .option('--agent-option <opt>', 'an option for every host\'s agent, e.g. --agent-option=--page-store-size=512M (repeatable)', collect, [])
    .option('--host-option <host:opt>', 'an option for one host\'s agent, e.g. --host-option=h3:--price=0.5 (repeatable)', collect, [])
    .option(...dirOption)
    .option('--json', 'print the cluster as JSON')
    .action(action(async (o) => {
      const t0 = Date.now();
      const hostOptions: Record<string, string[]> = {};
      for (const ho of o.hostOption as string[]) {
        const i = ho.indexOf(':');
        if (i <= 0) throw new PjError(codes.USAGE, `--host-option '${ho}' must be HOST:OPTION`);
        (hostOptions[ho.slice(0, i)] ??= []).push(ho.slice(i + 1));
      }
      const c = await clusterUp({ dir: clusterDir(o.clusterDir), name: o.name, hosts: o.hosts, exports: o.export, devices: o.device, hostOptions,
        agentOptions: [...o.agentOption, ...(o.route as string[]).map((r) => (parseRoute(r), `--route=${r}`))] });
      if (o.json) return printJson(c);
      process.stdout.write(`cluster ${c.name} up in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${c.hosts.map((h) => `${h.name} ${h.address}`).join(', ')}\n`);
    }));

  cluster.command('down')
    .description('stop every process and remove every namespace and mount of the cluster (safe to repeat)')
    .option(...dirOption)
    .option('--json', 'print what was removed as JSON')
    .action(action(async (o) => {
      const r = await clusterDown(clusterDir(o.clusterDir));
      if (o.json) return printJson(r);
      process.stdout.write(r.cluster ? `cluster ${r.cluster} down: ${r.killed.length} processes stopped, ${r.namespaces.length} namespaces removed\n` : 'no cluster is up\n');
    }));

  cluster.command('status')
    .description('hosts with address, agent pid and state (as etcd leases say)')
    .option(...dirOption)
    .option('--json', 'print as JSON')
    .action(action(async (o) => {
      const s = await clusterStatus(clusterDir(o.clusterDir));
      if (o.json) return printJson(s);
      printTable(s.hosts.map((h) => ({ ...h, agent_pid: h.agentPid })), ['host', 'address', 'agent_pid', 'state']);
    }));

  cluster.command('exec')
    .description('run a command inside a host (its network and mount namespaces)')
    .argument('<host>', 'h1..hN, or etcd')
    .argument('<cmd...>', 'the command, after --')
    .option(...dirOption)
    .action(action(async (host: string, cmd: string[], o) => {
      process.exitCode = await execOnHost(clusterDir(o.clusterDir), host, cmd);
    }));

  cluster.command('start')
    .description("start a host's agent again (after stop or a crash)")
    .argument('<host>')
    .option(...dirOption)
    .action(action(async (host: string, o) => {
      const c = readClusterFile(clusterDir(o.clusterDir));
      const h = findHost(c, host);
      await stopAgent(h, 'SIGTERM');
      h.agentPid = startAgent(c, h);
      writeClusterFile(c);
      await waitAgent(c, h);
      process.stdout.write(`${h.name}: agent ${h.agentPid} up\n`);
    }));

  cluster.command('stop')
    .description("stop a host's agent (the host stays; --signal KILL simulates a crash)")
    .argument('<host>')
    .option('--signal <sig>', 'signal to send', 'TERM')
    .option(...dirOption)
    .action(action(async (host: string, o) => {
      const c = readClusterFile(clusterDir(o.clusterDir));
      const h = findHost(c, host);
      const signal = `SIG${String(o.signal).toUpperCase().replace(/^SIG/, '')}` as NodeJS.Signals;
      if (!['SIGTERM', 'SIGKILL', 'SIGINT'].includes(signal)) throw new PjError(codes.USAGE, `--signal must be TERM, INT or KILL`);
      const stopped = await stopAgent(h, signal);
      process.stdout.write(stopped ? `${h.name}: agent ${h.agentPid} stopped\n` : `${h.name}: agent was not running\n`);
    }));
}
