// `pj logs [-f] JOB`: a job's output (stdout, and stderr to stderr), wherever it runs; -f follows it across moves until it ends.
import type { Command } from 'commander';
import type { JobRecord } from '../../migrator/index.js';
import { askAgent, withAgentOptions } from '../agent-socket.js';
import { action } from '../output.js';

const FOLLOW_POLL_MS = 200;

export function register(program: Command): void {
  withAgentOptions(program.command('logs').description("a job's output").argument('<job>', 'job id, id prefix or name'))
    .option('-f, --follow', 'keep printing until the job ends')
    .option('-n, --tail <lines>', 'only the last lines of what is there so far', (v) => parseInt(v, 10))
    .action(action(async (job: string, o) => {
      const offsets = { stdout: 0, stderr: 0 };
      const fetch = async (stream: 'stdout' | 'stderr') => {
        const r = (await askAgent(o, 'logs', { id: job, stream, offset: offsets[stream] })) as { data: string; next: number };
        offsets[stream] = r.next;
        return Buffer.from(r.data, 'base64');
      };
      const drain = async () => {
        let more = false;
        for (const stream of ['stdout', 'stderr'] as const) {
          const bytes = await fetch(stream);
          if (bytes.length) (stream === 'stdout' ? process.stdout : process.stderr).write(bytes);
          more ||= bytes.length > 0;
        }
        return more;
      };
      if (o.tail !== undefined) {
        for (const stream of ['stdout', 'stderr'] as const) {
          const parts: Buffer[] = [];
          for (let b = await fetch(stream); b.length; b = await fetch(stream)) parts.push(b);
          const lines = Buffer.concat(parts).toString().split('\n');
          const last = lines.at(-1) === '' ? lines.slice(0, -1) : lines;
          const out = last.slice(Math.max(0, last.length - o.tail)).join('\n');
          if (out) (stream === 'stdout' ? process.stdout : process.stderr).write(out + '\n');
        }
      } else while (await drain());
      while (o.follow) {
        const rec = (await askAgent(o, 'job', { id: job })) as JobRecord;
        const more = await drain();
        if (rec.state === 'exited' && !more) break;
        if (!more) await new Promise((r) => setTimeout(r, FOLLOW_POLL_MS));
      }
    }));
}
