// The net benchmark: a job's TCP connection through our proxy against a
// direct connection between the same network namespaces, in the same run, by
// the same probe (bench/peers/tcp-probe.py): throughput, round trip p50, and
// connections per second, over a local route (the server is reached from the
// job's host) and a remote route (a route names h2, so the connection goes
// through a tunnel to h2's manager, which connects there).
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../common/repo-root.js';
import { callControl } from '../manager/control-socket.js';
import { clusterDown } from '../manager/sim-cluster/down.js';
import { hostAddress, paths } from '../manager/sim-cluster/layout.js';
import { clusterUp } from '../manager/sim-cluster/up.js';
import type { JobRecord } from '../migrator/index.js';
import { runClient, startServer } from './host-process.js';
import { printRows, writeResult, type Row } from './report.js';

const MiB = 1024 * 1024;
const LOCAL_PORT = 7301;
const REMOTE_PORT = 7302;
const PROBE = 'peers/tcp-probe.py';

export async function netBench(argv: string[]): Promise<void> {
  const quick = argv.includes('--quick');
  const json = argv.includes('--json');
  const rounds = quick ? 3 : 5;
  const bytes = quick ? 256 * MiB : 1024 * MiB;
  const pings = quick ? 1000 : 4000;
  const connects = quick ? 200 : 500;
  const dir = mkdtempSync(join(tmpdir(), 'pj-bench-'));
  const log = (s: string) => { if (!json) process.stdout.write(s + '\n'); };
  const servers: Array<{ kill: (s: NodeJS.Signals) => boolean }> = [];
  try {
    log(`bringing up a 2-host cluster in ${dir} ...`);
    const [h1, h2] = [hostAddress(1), hostAddress(2)];
    // h2's address is reachable from h1 directly too: the route makes the proxy go through h2's manager.
    await clusterUp({ dir, name: 'bnet', hosts: 2, exports: [], agentOptions: [`--route=${h2}/32=h2`] });
    servers.push(await startServer(dir, 'h1', PROBE, ['server', h1, String(LOCAL_PORT)]));
    servers.push(await startServer(dir, 'h2', PROBE, ['server', h2, String(REMOTE_PORT)]));
    const direct = (args: string[]) => runClient(dir, 'h1', PROBE, args);
    const viaJob = (args: string[]) => inJob(dir, ['python3', join(repoRoot(), 'bench', PROBE), ...args]);
    const cases = {
      local: { addr: h1, port: LOCAL_PORT },
      remote: { addr: h2, port: REMOTE_PORT },
    };
    type Sample = { direct: number[]; proxy: number[] };
    const m: Record<string, Sample> = {};
    const add = (k: string, which: keyof Sample, v: number) => ((m[k] ??= { direct: [], proxy: [] })[which].push(v));
    for (let r = 0; r < rounds; r++) {
      log(`round ${r + 1}/${rounds}: ${bytes / MiB} MiB, ${pings} round trips, ${connects} connections, each way of reaching each server`);
      for (const [name, t] of Object.entries(cases)) {
        const at = [t.addr, String(t.port)];
        add(`${name}_mibps`, 'direct', (await direct(['stream', ...at, String(bytes)])).mibps);
        add(`${name}_mibps`, 'proxy', (await viaJob(['stream', ...at, String(bytes)])).mibps);
        add(`${name}_rtt_us`, 'direct', (await direct(['ping', ...at, String(pings)])).p50_us);
        add(`${name}_rtt_us`, 'proxy', (await viaJob(['ping', ...at, String(pings)])).p50_us);
        add(`${name}_connects`, 'direct', (await direct(['connect', ...at, String(connects)])).per_s);
        add(`${name}_connects`, 'proxy', (await viaJob(['connect', ...at, String(connects)])).per_s);
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const f = (k: string) => ({ direct: median(m[k].direct), proxy: median(m[k].proxy) });
    const figures = Object.fromEntries(Object.keys(m).map((k) => [k, f(k)]));
    const ratio = (k: string) => figures[k].proxy / figures[k].direct;
    const ratios = {
      proxy_local_throughput_vs_direct: ratio('local_mibps'),
      proxy_remote_throughput_vs_direct: ratio('remote_mibps'),
      proxy_local_rtt_vs_direct: ratio('local_rtt_us'),
      proxy_remote_rtt_vs_direct: ratio('remote_rtt_us'),
      proxy_local_connect_rate_vs_direct: ratio('local_connects'),
      proxy_remote_connect_rate_vs_direct: ratio('remote_connects'),
    };
    const results = {
      proxy_local_rtt_added_us: figures.local_rtt_us.proxy - figures.local_rtt_us.direct,
      proxy_remote_rtt_added_us: figures.remote_rtt_us.proxy - figures.remote_rtt_us.direct,
    };
    const goals = { proxy_local_throughput_vs_direct: '>= 0.8', proxy_local_rtt_added_us: '<= 100', proxy_remote_throughput_vs_direct: '>= 0.7' };
    if (!json) {
      const row = (figure: string, k: string, unit: string, goal?: string): Row => ({ figure, ours: figures[k].proxy, baseline: figures[k].direct, unit, ratio: ratio(k), goal });
      printRows('a job\'s connection through the proxy vs a direct connection from its host', [
        row('throughput, local route', 'local_mibps', 'MiB/s', '>= 0.8x'),
        row('throughput, remote route (via h2)', 'remote_mibps', 'MiB/s', '>= 0.7x'),
        row('round trip p50, local route', 'local_rtt_us', 'us', '<= +100 us'),
        row('round trip p50, remote route', 'remote_rtt_us', 'us'),
        row('connections/s, local route', 'local_connects', '/s'),
        row('connections/s, remote route', 'remote_connects', '/s'),
      ]);
      log(`\nround trip added: local ${results.proxy_local_rtt_added_us.toFixed(0)} us, remote ${results.proxy_remote_rtt_added_us.toFixed(0)} us`);
    }
    writeResult('net', { bench: 'net', quick, rounds, bytes, pings, connects, figures, ratios, results, goals }, json);
  } finally {
    for (const s of servers) s.kill('SIGKILL');
    await clusterDown(dir).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs a command as a job on h1 and returns the JSON line it prints. */
async function inJob(dir: string, cmd: string[]): Promise<any> {
  const sock = paths(dir).controlSocket('h1');
  const rec = (await callControl(sock, 'run', { cmd, policy: 'pin', cwd: '/', env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } }, 30_000)) as JobRecord;
  const out = join(paths(dir).hostState('h1'), 'jobs', rec.id, 'stdout');
  const deadline = Date.now() + 300_000;
  for (;;) {
    const text = existsSync(out) ? readFileSync(out, 'utf8') : '';
    if (text.includes('\n')) return JSON.parse(text.split('\n')[0]);
    if (existsSync(join(paths(dir).hostState('h1'), 'jobs', rec.id, 'status'))) throw new Error(`the probe job ended without a result: ${readFileSync(join(paths(dir).hostState('h1'), 'jobs', rec.id, 'stderr'), 'utf8')}`);
    if (Date.now() > deadline) throw new Error('the probe job gave no result');
    await new Promise((r) => setTimeout(r, 50));
  }
}
