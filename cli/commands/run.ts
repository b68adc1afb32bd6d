// `pj run [--on HOST] [--name NAME] [--cwd DIR] [--env K=V]… -- CMD…`: starts a job and prints its id.
import type { Command } from 'commander';
import { PjError, codes } from '../../common/errors.js';
import { inJobPrivateDir } from '../../common/job-private-dirs.js';
import { POLICIES, type JobRecord } from '../../migrator/index.js';
import { askAgent, withAgentOptions } from '../agent-socket.js';
import { parsePublish } from '../../net-layer/index.js';
import { action, printJson } from '../output.js';
import { parseSize } from '../units.js';

/** What a job gets of the caller's environment, before --env. */
const PASSED_ENV = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'USER', 'LOGNAME'];

export function register(program: Command): void {
  withAgentOptions(program.command('run').description('start a program as a job, which can move between hosts').argument('<cmd...>', 'the program and its arguments (after --)'))
    .option('--on <host>', 'the host to start it on (default: this one)')
    .option('--name <name>', 'a name for pj ps (default: the program)')
    .option('--cwd <dir>', 'its working directory (default: the current one, or / from under /tmp or /dev/shm, which each job has its own of)')
    .option('--env <k=v>', 'an environment variable (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--publish <port[:jobport]>', 'open PORT on the job\'s home host, forwarded to JOBPORT of the job wherever it runs (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--publish-on <where>', 'home (the host it starts on) or all (every host)', 'home')
    .option('--policy <policy>', `how the manager places it: ${POLICIES.join(', ')} (default follow: where its traffic goes)`)
    .option('--budget <size>', 'policy cheap: the remote traffic per second a cheaper host may add, e.g. 2M (default 1M)')
    .option('--json', 'print the job as JSON')
    .action(action(async (cmd: string[], o) => {
      const env: Record<string, string> = {};
      for (const k of PASSED_ENV) if (process.env[k] !== undefined) env[k] = process.env[k]!;
      for (const kv of o.env as string[]) {
        const eq = kv.indexOf('=');
        if (eq <= 0) throw new PjError(codes.USAGE, `--env '${kv}' must be K=V`);
        env[kv.slice(0, eq)] = kv.slice(eq + 1);
      }
      if (!['home', 'all'].includes(o.publishOn)) throw new PjError(codes.USAGE, '--publish-on must be home or all');
      const publish = (o.publish as string[]).map((p) => {
        try {
          return parsePublish(p, o.publishOn === 'all');
        } catch (e) {
          throw new PjError(codes.USAGE, (e as Error).message);
        }
      });
      let cwd: string = o.cwd ?? process.cwd();
      if (o.cwd === undefined && inJobPrivateDir(cwd)) {
        process.stderr.write(`pj run: the job starts in / (it has a ${inJobPrivateDir(cwd)} of its own, without ${cwd}); --cwd to choose\n`);
        cwd = '/';
      }
      const budget = o.budget === undefined ? undefined : parseSize('--budget', o.budget);
      const job = (await askAgent(o, 'run', { on: o.on, name: o.name, cmd, cwd, env, publish, policy: o.policy, budget }, 30_000)) as JobRecord;
      if (o.json) return printJson(job);
      process.stdout.write(job.id + '\n');
    }));
}
