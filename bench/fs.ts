// The fs benchmark: from h1 of a 2-host simulated cluster, the same workloads
// on h1's own disk (native), on /pj/h1/data (local, passthrough), on
// /pj/h2/data (remote), and on an sshfs mount of h2's /srv/data; plus raw TCP
// between h1 and h2, in every round like the others, as the ceiling for remote
// throughput. sshfs encrypts (ssh); the mesh does not yet (the trust issue).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clusterDown } from '../manager/sim-cluster/down.js';
import { clusterUp } from '../manager/sim-cluster/up.js';
import { runClient, startServer } from './host-process.js';
import { percentile, printRows, writeResult, type Row } from './report.js';
import { mountSshfs, type SshfsMount } from './sshfs.js';

const MiB = 1 << 20;
type Rate = { bytes?: number; ops?: number; seconds: number };

export async function fsBench(argv: string[]): Promise<void> {
  const quick = argv.includes('--quick');
  const json = argv.includes('--json');
  const fileMiB = quick ? 512 : 1024;
  const randOps = quick ? 20_000 : 100_000;
  const metaOps = quick ? 2_000 : 10_000;
  const rounds = quick ? 2 : 3;
  const log = (s: string) => { if (!json) process.stdout.write(s + '\n'); };
  const dir = mkdtempSync(join(tmpdir(), 'pj-bench-fs-'));
  let sshfs: SshfsMount | undefined;
  const servers: Array<{ kill: (s: NodeJS.Signals) => boolean }> = [];
  try {
    log(`bringing up a 2-host cluster in ${dir} ...`);
    const c = await clusterUp({ dir, name: 'benchfs', hosts: 2, exports: [] });
    const h2 = c.hosts[1];
    sshfs = await mountSshfs(dir, h2, 'h1');
    const targets = { native: '/srv/data', local: '/pj/h1/data', remote: '/pj/h2/data', sshfs: sshfs.path } as const;
    // Remote paths are read with this host's cache of the file dropped first: the figure is the network path.
    const op = (args: string[], remote = false) => runClient(dir, 'h1', 'peers/fs-ops.py', args, undefined, remote ? { PJ_BENCH_COLD_CLIENT: '1' } : {}) as Promise<Rate>;
    const mibps = (r: Rate) => r.bytes! / MiB / r.seconds;
    const opsps = (r: Rate) => r.ops! / r.seconds;
    // Rounds alternate between the targets so that all of them see the same disk and the
    // same machine; each figure is the median of its rounds (single runs of a write with
    // fsync move by 2x on this virtual disk).
    await op(['write', targets.native, String(fileMiB)]); // the first write to a fresh disk file allocates its blocks: not what we compare
    const runs: Record<string, Record<string, number[]>> = {};
    servers.push(await startServer(dir, 'h2', 'peers/raw-tcp.js', ['server', h2.address, '7171']));
    for (let round = 1; round <= rounds; round++) {
      log(`round ${round}/${rounds}, raw TCP h1 -> h2: ${fileMiB} MiB`);
      const raw = await runClient(dir, 'h1', 'peers/raw-tcp.js', ['stream', h2.address, '7171', String(fileMiB * MiB), String(MiB)]) as Rate;
      (runs.raw_tcp ??= { stream_mib_s: [] }).stream_mib_s.push(mibps(raw));
      for (const [name, path] of Object.entries(targets)) {
        log(`round ${round}/${rounds}, ${name} (${path}): write ${fileMiB} MiB + fsync, read it, ${randOps} random 4 KiB reads${name === 'remote' || name === 'sshfs' ? `, ${metaOps} create+stat+unlink` : ''}`);
        const r = (runs[name] ??= { seq_write_mib_s: [], seq_read_mib_s: [], rand_read_iops: [], meta_ops_s: [] });
        const remote = name === 'remote' || name === 'sshfs';
        r.seq_write_mib_s.push(mibps(await op(['write', path, String(fileMiB)])));
        r.seq_read_mib_s.push(mibps(await op(['read', path, String(fileMiB)], remote)));
        r.rand_read_iops.push(opsps(await op(['rand', path, String(fileMiB), String(randOps)], remote)));
        if (remote) r.meta_ops_s.push(opsps(await op(['meta', path, String(metaOps)])));
      }
    }
    const figures: Record<string, Record<string, number>> = {};
    for (const [name, r] of Object.entries(runs)) {
      figures[name] = Object.fromEntries(Object.entries(r).filter(([, xs]) => xs.length).map(([k, xs]) => [k, percentile(xs, 50)]));
    }

    const f = figures;
    const ratios = {
      local_seq_read_vs_native: f.local.seq_read_mib_s / f.native.seq_read_mib_s,
      local_seq_write_vs_native: f.local.seq_write_mib_s / f.native.seq_write_mib_s,
      local_rand_read_vs_native: f.local.rand_read_iops / f.native.rand_read_iops,
      remote_seq_read_vs_raw_tcp: f.remote.seq_read_mib_s / f.raw_tcp.stream_mib_s,
      remote_seq_write_vs_raw_tcp: f.remote.seq_write_mib_s / f.raw_tcp.stream_mib_s,
      remote_seq_read_vs_sshfs: f.remote.seq_read_mib_s / f.sshfs.seq_read_mib_s,
      remote_seq_write_vs_sshfs: f.remote.seq_write_mib_s / f.sshfs.seq_write_mib_s,
      remote_rand_read_vs_sshfs: f.remote.rand_read_iops / f.sshfs.rand_read_iops,
      remote_meta_ops_vs_sshfs: f.remote.meta_ops_s / f.sshfs.meta_ops_s,
    };
    const goals = { local_seq_read_vs_native: '>= 0.9', local_seq_write_vs_native: '>= 0.9', remote_seq_read_vs_raw_tcp: '>= 0.7', remote_seq_read_vs_sshfs: '>= 1.5', remote_meta_ops_vs_sshfs: '>= 2' };
    if (!json) {
      const row = (figure: string, ours: number, baseline: number, unit: string, goal?: string): Row => ({ figure, ours, baseline, unit, ratio: ours / baseline, goal });
      log('sshfs encrypts its traffic (ssh); the mesh between agents does not yet (the trust issue): remote figures against sshfs compare unlike work.');
      printRows('/pj against its baselines, measured in this run', [
        row('local seq read vs native', f.local.seq_read_mib_s, f.native.seq_read_mib_s, 'MiB/s', '>= 0.9x'),
        row('local seq write vs native', f.local.seq_write_mib_s, f.native.seq_write_mib_s, 'MiB/s', '>= 0.9x'),
        row('local 4K random read vs native', f.local.rand_read_iops, f.native.rand_read_iops, 'IOPS'),
        row('remote seq read vs raw TCP', f.remote.seq_read_mib_s, f.raw_tcp.stream_mib_s, 'MiB/s', '>= 0.7x'),
        row('remote seq write vs raw TCP', f.remote.seq_write_mib_s, f.raw_tcp.stream_mib_s, 'MiB/s'),
        row('remote seq read vs sshfs', f.remote.seq_read_mib_s, f.sshfs.seq_read_mib_s, 'MiB/s', '>= 1.5x'),
        row('remote seq write vs sshfs', f.remote.seq_write_mib_s, f.sshfs.seq_write_mib_s, 'MiB/s'),
        row('remote 4K random read vs sshfs', f.remote.rand_read_iops, f.sshfs.rand_read_iops, 'IOPS'),
        row('remote create+stat+unlink vs sshfs', f.remote.meta_ops_s, f.sshfs.meta_ops_s, 'ops/s', '>= 2x'),
      ]);
    }
    writeResult('fs', { bench: 'fs', quick, rounds, file_mib: fileMiB, rand_ops: randOps, meta_ops: metaOps, figures, ratios, goals }, json);
  } finally {
    for (const s of servers) s.kill('SIGKILL');
    await sshfs?.unmount().catch(() => {});
    await clusterDown(dir).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}
