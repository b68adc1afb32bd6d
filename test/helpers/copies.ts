// Every copy of a job on this machine (the simulated hosts share its PID
// namespace): pj-init as a PID namespace's pid 1, with its state letter.
import { readFileSync, readdirSync } from 'node:fs';

export function copies(id: string): Array<{ pid: number; state: string }> {
  const out: Array<{ pid: number; state: string }> = [];
  for (const d of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try {
      const argv = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (!argv[0].endsWith('/pj-init') || !argv[1]?.endsWith(`/${id}`)) continue;
      if (!/^NSpid:\s+\d+\s+1$/m.test(readFileSync(`/proc/${d}/status`, 'utf8'))) continue;
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      out.push({ pid: Number(d), state: stat.slice(stat.lastIndexOf(')') + 2)[0] });
    } catch { /* gone */ }
  }
  return out;
}

/** The copies that run (not stopped by a move or held by a CRIU, not ended). */
export const runningCopies = (id: string) => copies(id).filter((x) => !['T', 't', 'Z'].includes(x.state));
