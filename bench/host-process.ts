// Runs a compiled bench script inside a host of the simulated cluster and
// reads the JSON line it prints: a long-lived server, or a client run to its end.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../common/repo-root.js';
import { nsenterFor } from '../manager/sim-cluster/exec.js';
import { run } from '../common/run.js';

/** `script` is a compiled bench script (run with node) or, ending in .py, a Python one. */
function start(dir: string, host: string, script: string, args: string[], cpu?: number, env?: Record<string, string>): ChildProcess {
  const path = join(repoRoot(), script.endsWith('.py') ? 'bench' : join('dist', 'bench'), script);
  const argv = ['nsenter', ...nsenterFor(dir, host), ...(script.endsWith('.py') ? ['python3'] : [process.execPath]), path, ...args];
  const pinned = cpu === undefined ? argv : ['taskset', '-c', String(cpu), ...argv];
  return spawn(pinned[0], pinned.slice(1), { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
}

/** Pins every thread of a running process to one CPU. */
export async function pinAll(pid: number, cpu: number): Promise<void> {
  await run('taskset', ['-a', '-c', '-p', String(cpu), String(pid)]);
}

function firstJsonLine(child: ChildProcess, what: string, timeoutMs: number): Promise<any> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${what} gave no answer in ${timeoutMs} ms`)); }, timeoutMs);
    child.stdout!.on('data', (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) { clearTimeout(timer); resolve(JSON.parse(buf.slice(0, nl))); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${what} exited with ${code} before answering`)); });
  });
}

/** Starts a server; resolves once it says it listens. Kill it with the returned child. */
export async function startServer(dir: string, host: string, script: string, args: string[], cpu?: number): Promise<ChildProcess> {
  const child = start(dir, host, script, args, cpu);
  await firstJsonLine(child, `${script} server on ${host}`, 10_000);
  return child;
}

export function runClient(dir: string, host: string, script: string, args: string[], cpu?: number, env?: Record<string, string>, timeoutMs = 300_000): Promise<any> {
  return firstJsonLine(start(dir, host, script, args, cpu, env), `${script} client on ${host}`, timeoutMs);
}
