// `pj policy JOB [POLICY] [--budget SIZE]`: how the manager places a job, and why it is where it is.
import type { Command } from 'commander';
import { POLICIES, type JobRecord, type PolicyView } from '../../migrator/index.js';
import { askAgent, withAgentOptions } from '../agent-socket.js';
import { action, printJson } from '../output.js';
import { parseSize } from '../units.js';

export function register(program: Command): void {
  withAgentOptions(program.command('policy').description(`show or change how the manager places a job: ${POLICIES.join(', ')}`)
    .argument('<job>', 'job id, id prefix or name')
    .argument('[policy]', 'follow (move to where its traffic goes), pin (never move), balance (also shed load), cheap (the cheapest host within its budget)'))
    .option('--budget <size>', 'policy cheap: the remote traffic per second a cheaper host may add, e.g. 2M')
    .option('--json', 'print as JSON')
    .action(action(async (job: string, policy: string | undefined, o) => {
      const budget = o.budget === undefined ? undefined : parseSize('--budget', o.budget);
      const r = (await askAgent(o, 'policy', { id: job, policy, budget })) as PolicyView | JobRecord;
      if (o.json) return printJson(r);
      const d = 'decision' in r ? r.decision : undefined;
      process.stdout.write(`${r.id}: ${r.policy ?? 'follow'}${'budget' in r && r.budget !== undefined ? ` (budget ${r.budget} B/s)` : ''}${d ? `; last decision: ${d.outcome === 'move' ? `move to ${d.to}` : 'stay'}: ${d.detail}` : ''}\n`);
    }));
}
