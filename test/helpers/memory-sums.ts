// The md5 of the memory of a memory-job.py, as its main process and its child
// print them on SIGUSR1 ("main …", "child …").
import { waitFor, type TestCluster } from './cluster.js';

export async function memorySums(c: TestCluster, id: string, timeoutMs: number): Promise<Record<string, string>> {
  const lines = async () => (await c.pj(['logs', id])).stdout.split('\n').filter(Boolean);
  const before = (await lines()).length;
  if ((await c.pj(['kill', '-s', 'USR1', id])).code !== 0) throw new Error(`pj kill -s USR1 ${id} failed`);
  await waitFor(async () => (await lines()).slice(before).filter((l) => /^(main|child) /.test(l)).length === 2, timeoutMs, 200);
  return Object.fromEntries((await lines()).slice(before).map((l) => l.split(' ')));
}
