// pj-init as jobs run it: a copy named by its content in a machine-wide folder. A job's /tmp and
// /dev/shm are its own, and pj-init runs itself again by path inside the job's mounts (so CRIU finds
// the mapping's mount there): a checkout under /tmp could not start a job. The same build has the
// same path on every host, which a restore needs; older copies stay for the jobs that run them.
import { join } from 'node:path';
import { copyByContent } from '../common/content-copy.js';
import { repoRoot } from '../common/repo-root.js';

let installed: string | undefined;

/** The path of the installed pj-init (installed on the first call; throws if it cannot be). */
export function initBinary(): string {
  installed ??= copyByContent(join(repoRoot(), 'build', 'Release', 'pj-init'), '/var/lib/picojump/bin');
  return installed;
}
