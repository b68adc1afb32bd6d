#!/usr/bin/env node
// `pj-mv <pid|job> <host> [--mode M] [--json]`: moves the job a process belongs to
// (a pid as this caller sees it), or a job by id or name, to another host.
import { PjError, codes } from '../common/errors.js';
import { namespaceOf } from '../common/process-ns.js';
import type { JobRecord } from '../migrator/index.js';
import { askAgent } from './agent-socket.js';
import { moveJob } from './commands/mv.js';
import { action } from './output.js';

const args = process.argv.slice(2);
const json = args.includes('--json');
const modeAt = args.indexOf('--mode');
const mode = modeAt >= 0 ? args[modeAt + 1] : undefined;
const [target, host] = args.filter((a, i) => a !== '--json' && (modeAt < 0 || (i !== modeAt && i !== modeAt + 1)));

await action(async () => {
  if (!target || !host) throw new PjError(codes.USAGE, 'usage: pj-mv <pid|job> <host> [--mode hybrid|stop-copy|pre-copy|post-copy] [--json]');
  let job = target;
  if (/^\d+$/.test(target)) {
    const ns = namespaceOf(Number(target), 'pid');
    if (ns === undefined) throw new PjError(codes.NOT_A_JOB, `no process ${target} here`);
    job = ((await askAgent({}, 'job-of-ns', { ns })) as JobRecord).id;
  }
  await moveJob({}, job, host, json, mode);
})();
