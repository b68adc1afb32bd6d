// pj-init as jobs run it: a copy named by its content in a machine-wide folder. A job's /tmp and
// /dev/shm are its own, and pj-init runs itself again by path inside the job's mounts (so CRIU finds
// the mapping's mount there): a checkout under /tmp could not start a job. The same content has the
// same path on every host, which a restore needs; older copies stay for the jobs that run them.
import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { repoRoot } from '../common/repo-root.js';

const INSTALLED = '/var/lib/picojump/bin';

let installed: Promise<string> | undefined;

/** The path of the installed pj-init (installed on the first call). */
export function initBinary(): Promise<string> {
  installed ??= install().catch((e) => {
    installed = undefined;
    throw e;
  });
  return installed;
}

async function install(): Promise<string> {
  const bytes = await readFile(join(repoRoot(), 'build', 'Release', 'pj-init'));
  const dir = join(INSTALLED, createHash('sha256').update(bytes).digest('hex').slice(0, 16));
  const path = join(dir, 'pj-init');
  if (await stat(path).then((s) => s.size === bytes.length, () => false)) return path;
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const tmp = `${path}.${process.pid}`;
  await writeFile(tmp, bytes, { mode: 0o755 });
  await chmod(tmp, 0o755);
  await rename(tmp, path);
  return path;
}
