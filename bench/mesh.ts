// The mesh benchmark: between two hosts of a simulated cluster, our mesh
// (agent to agent, authenticated) against plain TCP between the same network
// namespaces, both from Node: RPC round trips and streamed throughput. The
// net-ipc package is measured the same way, as the candidate we evaluated.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { callControl } from '../manager/control-socket.js';
import { clusterDown } from '../manager/sim-cluster/down.js';
import { paths } from '../manager/sim-cluster/layout.js';
import { clusterUp } from '../manager/sim-cluster/up.js';
import { pinAll, runClient, startServer } from './host-process.js';
import { percentile, printRows, writeResult, type Row } from './report.js';

const MiB = 1024 * 1024;
const RAW_PORT = 7171;
const IPC_PORT = 7172;
const PING_SIZE = 64;

export async function meshBench(argv: string[]): Promise<void> {
  const quick = argv.includes('--quick');
  const json = argv.includes('--json');
  // Measurements alternate between ours and the baselines, in rounds, so that
  // both see the same machine (on 2 cores, scheduling moves single runs by 2x).
  const rounds = quick ? 5 : 8;
  const pings = quick ? 2000 : 10000;
  const streamBytes = quick ? 256 * MiB : 512 * MiB;
  const chunks = [64 * 1024, 256 * 1024, MiB];
  const dir = mkdtempSync(join(tmpdir(), 'pj-bench-'));
  const log = (s: string) => { if (!json) process.stdout.write(s + '\n'); };
  const servers: Array<{ kill: (s: NodeJS.Signals) => boolean }> = [];
  try {
    log(`bringing up a 2-host cluster in ${dir} ...`);
    const c = await clusterUp({ dir, name: 'bench', hosts: 2, exports: [] });
    const h2 = c.hosts[1].address;
    // Each side on a CPU of its own, the same for ours and the baselines: left to the
    // scheduler, a client landing on its server's CPU halves a round trip at random.
    await pinAll(c.hosts[0].agentPid!, 0);
    await pinAll(c.hosts[1].agentPid!, 1);
    const agent = (op: string, args: Record<string, unknown>) => callControl(paths(dir).controlSocket('h1'), op, args, 600_000);
    servers.push(await startServer(dir, 'h2', 'peers/raw-tcp.js', ['server', h2, String(RAW_PORT)], 1));
    servers.push(await startServer(dir, 'h2', 'peers/net-ipc.js', ['server', h2, String(IPC_PORT)], 1));
    const raw = (mode: string, a: number, b: number) => runClient(dir, 'h1', 'peers/raw-tcp.js', [mode, h2, String(RAW_PORT), String(a), String(b)], 0);
    const ipc = (mode: string, a: number, b: number) => runClient(dir, 'h1', 'peers/net-ipc.js', [mode, h2, String(IPC_PORT), String(a), String(b)], 0);

    log(`round trips: ${rounds} rounds of ${pings / rounds} x ${PING_SIZE} bytes each way, after a warm-up`);
    const per = pings / rounds;
    const meshRtt: number[] = [];
    const rawRtt: number[] = [];
    const ipcRtt: number[] = [];
    await agent('ping', { host: 'h2', count: 200, size: PING_SIZE });
    for (let r = 0; r < rounds; r++) {
      meshRtt.push(...((await agent('ping', { host: 'h2', count: per, size: PING_SIZE })) as { rttsMs: number[] }).rttsMs);
      rawRtt.push(...((await raw('ping', per + 200, PING_SIZE)) as { rttsMs: number[] }).rttsMs.slice(200));
      ipcRtt.push(...((await ipc('ping', per + 200, PING_SIZE)) as { rttsMs: number[] }).rttsMs.slice(200));
    }

    const mibps = (r: { bytes: number; seconds: number }) => r.bytes / MiB / r.seconds;
    const median = (xs: number[]) => percentile(xs, 50);
    const stream: Record<string, { mesh: number; raw: number; netIpc: number }> = {};
    await agent('stream', { host: 'h2', bytes: 128 * MiB, chunk: MiB, timeoutMs: 30_000 }); // warm-up: JIT and socket buffers
    for (const chunk of chunks) {
      log(`streaming ${streamBytes / MiB} MiB in ${chunk / 1024} KiB chunks, ${rounds} rounds`);
      const runs = { mesh: [] as number[], raw: [] as number[], netIpc: [] as number[] };
      for (let r = 0; r < rounds; r++) {
        runs.mesh.push(mibps((await agent('stream', { host: 'h2', bytes: streamBytes, chunk, timeoutMs: 30_000 })) as { bytes: number; seconds: number }));
        runs.raw.push(mibps(await raw('stream', streamBytes, chunk)));
        runs.netIpc.push(mibps(await ipc('stream', streamBytes, chunk)));
      }
      stream[`${chunk / 1024}KiB`] = { mesh: median(runs.mesh), raw: median(runs.raw), netIpc: median(runs.netIpc) };
    }
    const worst = Object.values(stream).reduce((m, s) => Math.min(m, s.mesh / s.raw), Infinity);
    const mean = (k: 'mesh' | 'raw' | 'netIpc') => Object.values(stream).reduce((s, x) => s + x[k], 0) / chunks.length;

    const figures = {
      rpc_p50_ms: { mesh: percentile(meshRtt, 50), raw_tcp: percentile(rawRtt, 50), net_ipc: percentile(ipcRtt, 50) },
      rpc_p99_ms: { mesh: percentile(meshRtt, 99), raw_tcp: percentile(rawRtt, 99), net_ipc: percentile(ipcRtt, 99) },
      stream_mib_per_s: stream,
    };
    const ratios = {
      rpc_p50_vs_raw_tcp: figures.rpc_p50_ms.mesh / figures.rpc_p50_ms.raw_tcp,
      rpc_p99_vs_raw_tcp: figures.rpc_p99_ms.mesh / figures.rpc_p99_ms.raw_tcp,
      stream_throughput_vs_raw_tcp: mean('mesh') / mean('raw'),
      stream_throughput_worst_chunk_vs_raw_tcp: worst,
      net_ipc_rpc_p50_vs_raw_tcp: figures.rpc_p50_ms.net_ipc / figures.rpc_p50_ms.raw_tcp,
      net_ipc_stream_throughput_vs_raw_tcp: mean('netIpc') / mean('raw'),
    };
    const goals = { rpc_p50_vs_raw_tcp: '<= 2', stream_throughput_vs_raw_tcp: '>= 0.7' };
    if (!json) {
      const rows: Row[] = [
        { figure: 'RPC p50', ours: figures.rpc_p50_ms.mesh, baseline: figures.rpc_p50_ms.raw_tcp, unit: 'ms', ratio: ratios.rpc_p50_vs_raw_tcp, goal: '<= 2x' },
        { figure: 'RPC p99', ours: figures.rpc_p99_ms.mesh, baseline: figures.rpc_p99_ms.raw_tcp, unit: 'ms', ratio: ratios.rpc_p99_vs_raw_tcp },
        ...Object.entries(stream).map(([k, s]) => ({ figure: `stream ${k} chunks`, ours: s.mesh, baseline: s.raw, unit: 'MiB/s', ratio: s.mesh / s.raw, goal: '>= 0.7x' })),
      ];
      printRows('our mesh vs raw TCP between the same two hosts', rows);
      printRows('net-ipc (messagepack) vs raw TCP, for the evaluation', [
        { figure: 'RPC p50', ours: figures.rpc_p50_ms.net_ipc, baseline: figures.rpc_p50_ms.raw_tcp, unit: 'ms', ratio: ratios.net_ipc_rpc_p50_vs_raw_tcp },
        ...Object.entries(stream).map(([k, s]) => ({ figure: `stream ${k} chunks`, ours: s.netIpc, baseline: s.raw, unit: 'MiB/s', ratio: s.netIpc / s.raw })),
      ]);
    }
    writeResult('mesh', { bench: 'mesh', quick, rounds, pings, stream_bytes_per_round: streamBytes, figures, ratios, goals }, json);
  } finally {
    for (const s of servers) s.kill('SIGKILL');
    await clusterDown(dir).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}
