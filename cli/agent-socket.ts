// Which agent a CLI command talks to: `--host NAME`'s in the simulated cluster,
// else the agent of the host we run on (/run/pj/agent.sock), else h1's.
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { callControl } from '../manager/control-socket.js';
import { clusterDir, paths } from '../manager/sim-cluster/layout.js';

export const LOCAL_SOCKET = '/run/pj/agent.sock';

export interface AgentTarget { host?: string; clusterDir?: string }

export function withAgentOptions(cmd: Command): Command {
  return cmd
    .option('--host <name>', "talk to this host's agent (default: this host's, or h1's)")
    .option('--cluster-dir <dir>', 'the simulated cluster (default $PJ_CLUSTER_DIR or /var/lib/picojump/cluster)');
}

export function agentSocket(t: AgentTarget): string {
  if (process.env.PJ_SOCKET) return process.env.PJ_SOCKET;
  const dir = clusterDir(t.clusterDir);
  if (t.host) return paths(dir).controlSocket(t.host);
  if (existsSync(LOCAL_SOCKET)) return LOCAL_SOCKET;
  return paths(dir).controlSocket('h1');
}

export function askAgent(t: AgentTarget, op: string, args: Record<string, unknown> = {}, timeoutMs?: number): Promise<unknown> {
  return callControl(agentSocket(t), op, args, timeoutMs);
}
