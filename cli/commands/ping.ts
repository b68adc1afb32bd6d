// `pj ping HOST`: round trips (and, with --stream, throughput) over the mesh
// from this host's agent to HOST's.
import type { Command } from 'commander';
import { askAgent, withAgentOptions } from '../agent-socket.js';
import { action, printJson } from '../output.js';

const int = (v: string) => parseInt(v, 10);

export function register(program: Command): void {
  withAgentOptions(program.command('ping').description('measure the mesh to another host').argument('<target>', 'the host to reach'))
    .option('-c, --count <n>', 'round trips', int, 5)
    .option('-s, --size <bytes>', 'payload of each round trip', int, 0)
    .option('--stream <mib>', 'also stream this many MiB and report throughput', int)
    .option('--timeout <ms>', 'deadline of each RPC', int, 5000)
    .option('--json', 'print as JSON')
    .action(action(async (target: string, o) => {
      const { rttsMs } = (await askAgent(o, 'ping', { host: target, count: o.count, size: o.size, timeoutMs: o.timeout }, o.timeout * o.count + 5000)) as { rttsMs: number[] };
      const sorted = [...rttsMs].sort((a, b) => a - b);
      const result: Record<string, unknown> = { target, count: rttsMs.length, minMs: sorted[0], p50Ms: sorted[Math.floor(sorted.length / 2)], maxMs: sorted.at(-1) };
      if (o.stream) {
        const s = (await askAgent(o, 'stream', { host: target, bytes: o.stream * 1048576, chunk: 1048576, timeoutMs: o.timeout }, 120_000)) as { bytes: number; seconds: number };
        result.streamMiBps = s.bytes / 1048576 / s.seconds;
      }
      if (o.json) return printJson(result);
      process.stdout.write(`${target}: ${rttsMs.length} round trips, min ${sorted[0].toFixed(3)} ms, p50 ${(result.p50Ms as number).toFixed(3)} ms, max ${sorted.at(-1)!.toFixed(3)} ms\n`);
      if (o.stream) process.stdout.write(`${target}: streamed ${o.stream} MiB at ${(result.streamMiBps as number).toFixed(0)} MiB/s\n`);
    }));
}
