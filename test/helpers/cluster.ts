// A real simulated cluster for a test: `pj cluster up` in a fresh directory with
// a unique name, `pj cluster down` in teardown (also when the test fails).
import { spawn, spawnSync } from 'node:child_process';
import type { Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { pjCli, repoRoot } from '../../common/repo-root.js';
import { readClusterFile, type ClusterFile } from '../../manager/sim-cluster/layout.js';

export interface RunResult { code: number; stdout: string; stderr: string; ms: number }

export interface Started { printed(text: string): Promise<void>; result: Promise<RunResult> }

interface PjOptions { timeoutMs?: number; env?: Record<string, string>; cwd?: string }

export interface TestCluster {
  dir: string;
  name: string;
  file(): ClusterFile;
  /** Runs the built `pj` CLI against this cluster (`env`: more environment, e.g. PJ_FAULT for an agent it starts; `cwd`: the folder it runs in). */
  pj(args: string[], opts?: PjOptions): Promise<RunResult>;
  /** Runs a command inside a host of the cluster (`pj cluster exec`). */
  exec(host: string, cmd: string[], opts?: { timeoutMs?: number }): Promise<RunResult>;
  /** Starts a command inside a host; `printed(text)` resolves once its output holds `text`. */
  start(host: string, cmd: string[], opts?: { timeoutMs?: number }): Started;
  /** A compiled helper script under dist/test/helpers, run with node inside a host. */
  helper(host: string, name: string, args: string[], opts?: { timeoutMs?: number }): Promise<RunResult>;
  down(): Promise<RunResult>;
}

export function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new Error('these tests need root (namespaces, mounts); run them as root');
}

let counter = 0;

export async function startCluster(t: Test, opts: { hosts?: number; exports?: string[]; devices?: string[]; agentOptions?: string[]; hostOptions?: string[]; routes?: string[] } = {}): Promise<TestCluster> {
  requireRoot();
  const dir = mkdtempSync(join(tmpdir(), 'pj-test-'));
  const name = `t${process.pid % 100000}${String.fromCharCode(97 + (counter++ % 26))}`;
  const env = { ...process.env, PJ_CLUSTER_DIR: dir };
  const startPj = (args: string[], o: PjOptions = {}): Started => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [pjCli(), ...args], { env: { ...env, ...o.env }, cwd: o.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const watchers = new Set<() => void>();
    child.stdout.on('data', (d) => { stdout += d; watchers.forEach((w) => w()); });
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 120_000);
    const result = new Promise<RunResult>((resolve) => child.on('close', (code, signal) => {
      clearTimeout(timer);
      watchers.forEach((w) => w());
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr, ms: Date.now() - t0 });
    }));
    const printed = (text: string) => new Promise<void>((resolve, reject) => {
      const check = () => {
        if (stdout.includes(text)) resolve();
        else if (child.exitCode !== null || child.signalCode !== null) reject(new Error(`ended without printing '${text}': ${stdout}${stderr}`));
        else return;
        watchers.delete(check);
      };
      watchers.add(check);
      check();
    });
    return { printed, result };
  };
  const runPj = (args: string[], o: PjOptions = {}): Promise<RunResult> => startPj(args, o).result;
  const c: TestCluster = {
    dir,
    name,
    file: () => readClusterFile(dir),
    pj: runPj,
    exec: (host, cmd, o) => runPj(['cluster', 'exec', host, '--', ...cmd], o),
    start: (host, cmd, o) => startPj(['cluster', 'exec', host, '--', ...cmd], o),
    helper: (host, script, args, o) => runPj(['cluster', 'exec', host, '--', process.execPath, join(repoRoot(), 'dist', 'test', 'helpers', `${script}.js`), ...args], o),
    down: () => runPj(['cluster', 'down']),
  };
  t.teardown(async () => {
    await c.down();
    rmSync(dir, { recursive: true, force: true });
  });
  const exportFlags = [...(opts.exports ?? []).flatMap((e) => ['--export', e]), ...(opts.devices ?? []).flatMap((d) => ['--device', d]),
    ...(opts.agentOptions ?? []).map((a) => `--agent-option=${a}`), ...(opts.hostOptions ?? []).map((a) => `--host-option=${a}`), ...(opts.routes ?? []).map((r) => `--route=${r}`)];
  const up = await runPj(['cluster', 'up', '--hosts', String(opts.hosts ?? 3), '--name', name, ...exportFlags]);
  if (up.code !== 0) throw new Error(`pj cluster up failed: ${up.stderr}`);
  return c;
}

/** Polls `probe` until it returns true; resolves with the time it took, or rejects after `timeoutMs`. */
export async function waitFor(probe: () => Promise<boolean>, timeoutMs: number, stepMs = 100): Promise<number> {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    if (await probe()) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  throw new Error(`condition not met within ${timeoutMs} ms`);
}

/** Network namespaces whose name starts with `prefix-`. */
export function netnsWithPrefix(prefix: string): string[] {
  const out = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
  return out.split('\n').map((l) => l.split(' ')[0]).filter((n) => n.startsWith(`${prefix}-`));
}
