// Running the system's tools (ip, nsenter, mount, ...) with clear errors, and
// starting long-lived daemons with none of our descriptors but stdio.
import { execFile, spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { PjError, codes } from './errors.js';

export function run(cmd: string, args: string[], opts: { allowFail?: boolean } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? Number((err as NodeJS.ErrnoException).code) : 1) : 0;
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') {
        return reject(new PjError(codes.CLUSTER, `'${cmd}' is not installed (run scripts/setup)`));
      }
      if (err && !opts.allowFail) {
        return reject(new PjError(codes.CLUSTER, `${cmd} ${args.join(' ')} failed: ${stderr.trim() || err.message}`));
      }
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * Starts a daemon in its own session with stdout/stderr appended to `logFile`.
 * The shell in front (bash: dash cannot name fds above 9) closes every inherited descriptor above 2 (the caller's
 * shell may leak some), then execs the daemon, so the pid returned is the daemon's.
 */
export function spawnDaemon(cmd: string, args: string[], logFile: string): number {
  const fd = openSync(logFile, 'a');
  const closeInherited = 'for f in /proc/$$/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-" 2>/dev/null; done; exec "$@"';
  const child = spawn('/bin/bash', ['-c', closeInherited, 'pj-daemon', cmd, ...args], { detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  child.unref();
  if (child.pid === undefined) throw new PjError(codes.CLUSTER, `could not start ${cmd}`);
  return child.pid;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
