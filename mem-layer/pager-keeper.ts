// The keeper of a lazily restored job's userfaultfds (native/pager-keeper):
// a process of its own, so that the job outlives its agent while pages still
// come. Each move in starts one beside its pager; the pager tells it every task
// and every change to the tasks' memory, and when every page is there the
// keeper exits. Should the agent die first, the job's faults wait in the
// keeper until the next agent's pager adopts it (Pager.adopt on the same socket).
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { Log } from '../common/log.js';
import { repoRoot } from '../common/repo-root.js';
import { call, loadBinding } from '../native/loader.js';

/** Starts a keeper listening at `socketPath`; its own log lines go to this process's stderr. */
export function startPagerKeeper(socketPath: string, log: Log): void {
  const fd = call((ctx) => loadBinding().pagerKeeperListen(socketPath, ctx), socketPath);
  try {
    // Detached: a signal to the agent's process group does not reach it.
    const child = spawn(join(repoRoot(), 'build', 'Release', 'pj-pager-keeper'), [], { detached: true, stdio: ['ignore', 'ignore', 'inherit', fd] });
    child.on('error', (e) => log.error({ op: 'pager-keeper', err: e.message }, 'the pager\'s keeper did not start: the job would not outlive this agent'));
    child.unref();
  } finally {
    loadBinding().closeFd(fd);
  }
}
