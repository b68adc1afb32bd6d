// `pj top [--json] [-n N]`: the jobs of the cluster as the policy sees them,
// refreshed every second like top: where each runs, what it uses, its traffic
// by host (local, remote) and the policy's last decision.
import type { Command } from 'commander';
import type { HostView } from '../../manager/cluster-state.js';
import type { PolicyView } from '../../migrator/index.js';
import { askAgent, withAgentOptions } from '../agent-socket.js';
import { action, printJson, printTable } from '../output.js';
import { human } from '../units.js';

interface Top { jobs: PolicyView[]; hosts: HostView[] }

const ago = (iso: string | undefined): string => {
  if (!iso) return '-';
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
};

function render(t: Top): void {
  const hosts = t.hosts.map((h) => `${h.name} ${h.state}${h.drained ? ' drained' : ''} load ${(h.use?.load ?? 0).toFixed(2)}/${h.maxLoad ?? '-'} price ${h.price ?? '-'}`);
  process.stdout.write(`hosts: ${hosts.join(' | ')}\n\n`);
  printTable(t.jobs.map((j) => {
    const local = j.traffic[j.host]?.bytesPerS ?? 0;
    const remote = Object.entries(j.traffic).filter(([h, r]) => h !== j.host && r.bytesPerS >= 1).map(([h, r]) => `${h} ${human(r.bytesPerS)}`);
    return {
      job: j.id, name: j.name, host: j.host, policy: j.policy, rss: human(j.rssBytes), cpu: `${(j.cpu * 100).toFixed(0)}%`,
      'local/s': human(local), 'remote/s': remote.join(' ') || '0', moves: j.moves, 'last move': j.movedAt ? `${ago(j.movedAt)} (${j.moveReason ?? '?'})` : '-',
      reason: j.decision ? `${j.decision.outcome === 'move' ? `→ ${j.decision.to}: ` : ''}${j.decision.detail}` : '-',
    };
  }), ['job', 'name', 'host', 'policy', 'rss', 'cpu', 'local/s', 'remote/s', 'moves', 'last move', 'reason']);
}

export function register(program: Command): void {
  withAgentOptions(program.command('top').description('the jobs as the policy sees them: use, traffic by host, last move and reason (refreshes every second)'))
    .option('--json', 'print one snapshot as JSON')
    .option('-n, --iterations <n>', 'stop after N screens', (v) => parseInt(v, 10))
    .option('--interval <s>', 'seconds between screens', parseFloat, 1)
    .action(action(async (o) => {
      if (o.json) return printJson(await askAgent(o, 'top', {}, 10_000));
      for (let i = 0; o.iterations === undefined || i < o.iterations; i++) {
        const t = (await askAgent(o, 'top', {}, 10_000)) as Top;
        if (process.stdout.isTTY) process.stdout.write('\x1b[H\x1b[2J');
        process.stdout.write(`pj top — ${new Date().toISOString().slice(11, 19)}\n`);
        render(t);
        if (o.iterations === undefined || i + 1 < o.iterations) await new Promise((r) => setTimeout(r, o.interval * 1000));
      }
    }));
}
