// `pj mv JOB HOST [--json]` (and pj-mv): move a running job; on a terminal the phase, MiB sent and time go by as it moves.
import type { Command } from 'commander';
import { MODES, type JobRecord, type MoveProgress, type MoveResult } from '../../migrator/index.js';
import { askAgent, withAgentOptions, type AgentTarget } from '../agent-socket.js';
import { action, printJson } from '../output.js';

const PROGRESS_MS = 100;
const MOVE_TIMEOUT_MS = 16 * 60_000;

export async function moveJob(t: AgentTarget, job: string, to: string, json: boolean, mode?: string): Promise<void> {
  const rec = (await askAgent(t, 'job', { id: job })) as JobRecord;
  const tty = !json && process.stderr.isTTY;
  let timer: NodeJS.Timeout | undefined;
  if (tty) {
    timer = setInterval(() => {
      void (askAgent(t, 'mv-progress', { id: rec.id, from: rec.host }) as Promise<MoveProgress | null>).then((p) => {
        if (p) process.stderr.write(`\r${rec.id} ${rec.host} -> ${to}: ${p.phase.padEnd(8)} ${(p.bytesSent / (1 << 20)).toFixed(1)} MiB sent, ${(p.elapsedMs / 1000).toFixed(1)} s `);
      }, () => {});
    }, PROGRESS_MS);
  }
  try {
    const r = (await askAgent(t, 'mv', { id: rec.id, to, mode }, MOVE_TIMEOUT_MS)) as MoveResult;
    if (json) return printJson(r);
    if (tty) process.stderr.write('\n');
    if (r.note) return void process.stdout.write(`${r.job}: ${r.from} -> ${r.to} (${r.note})\n`);
    process.stdout.write(`${r.job}: ${r.from} -> ${r.to} in ${r.downtime_ms} ms of downtime (${describe(r)})\n`);
  } finally {
    clearInterval(timer);
  }
}

const mib = (n = 0): string => `${(n / (1 << 20)).toFixed(1)} MiB`;

function describe(r: MoveResult): string {
  const frozen = `dump ${r.dump_ms} ms, images ${mib(r.bytes_frozen ?? r.bytes_sent)} in ${r.transfer_ms} ms, restore ${r.restore_ms} ms`;
  if (r.all_local_ms === undefined) return `${r.mode}: ${frozen}`;
  const pre = r.precopy_rounds ? `${mib(r.bytes_precopy)} pre-copied in ${r.precopy_rounds} rounds; ` : '';
  return `${r.mode}: ${pre}${frozen}; then ${r.pages_from_store} pages from this host's store and ${r.pages_fetched} fetched (${mib(r.bytes_lazy)}), all here ${r.all_local_ms} ms after the resume`;
}

export function register(program: Command): void {
  withAgentOptions(program.command('mv').description('move a running job to another host').argument('<job>', 'job id, id prefix or name').argument('<host>', 'the destination'))
    .option('--mode <mode>', `how memory moves: ${MODES.join(' (default), ')}`, 'hybrid')
    .option('--json', 'print the result as JSON')
    .action(action(async (job: string, host: string, o) => moveJob(o, job, host, Boolean(o.json), o.mode)));
}
