// `pj logs [-f] JOB`: a job's output (stdout, and stderr to stderr), wherever it runs; -f follows it across moves until it ends.
import type { Command } from 'commander';
import type { JobRecord } from '../../migrator/index.js';
import { askAgent, withAgentOptions } from '../agent-socket.js';
import { action } from '../output.js';

const FOLLOW_POLL_MS = 200;

export function register(program: Command): void {
  withAgentOptions(program.command('logs').description("a job's output").argument('<job>', 'job id, id prefix or name'))
    .option('-f, --follow', 'keep printing until the job ends')
    .action(action(async (job: string, o) => {
      const offsets = { stdout: 0, stderr: 0 };
      const drain = async () => {
        let more = false;
        for (const stream of ['stdout', 'stderr'] as const) {
          const r = (await askAgent(o, 'logs', { id: job, stream, offset: offsets[stream] })) as { data: string; next: number };
          const bytes = Buffer.from(r.data, 'base64');
          if (bytes.length) (stream === 'stdout' ? process.stdout : process.stderr).write(bytes);
          more ||= r.next > offsets[stream];
          offsets[stream] = r.next;
        }
        return more;
      };
      while (await drain());
      while (o.follow) {
        const rec = (await askAgent(o, 'job', { id: job })) as JobRecord;
        const more = await drain();
        if (rec.state === 'exited' && !more) break;
        if (!more) await new Promise((r) => setTimeout(r, FOLLOW_POLL_MS));
      }
    }));
}
