// `npm run demo` (past its set-up step) shows a live 3-host cluster and cleans up by itself.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../common/repo-root.js';
import { netnsWithPrefix } from './helpers/cluster.js';

t.test('the demo runs to its end within 2 minutes and leaves nothing behind', async (t) => {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [join(repoRoot(), 'dist', 'scripts', 'demo.js')], { encoding: 'utf8', timeout: 120_000 });
  t.equal(r.status, 0, r.stderr);
  t.ok(Date.now() - t0 < 120_000);
  t.match(r.stdout, /cluster demo up in [\d.]+ s: h1 10\.66\.0\.11, h2 10\.66\.0\.12, h3 10\.66\.0\.13/);
  t.match(r.stdout, /h2\s+down/, 'the killed agent shows as down');
  t.match(r.stdout, /h3: streamed 256 MiB at \d+ MiB\/s/);
  t.match(r.stdout, /h2\|.*\nh1 via \/pj\|/, 'sqlite3 on h1 wrote through /pj into h2\'s database');
  t.match(r.stdout, /^2 rows$/m, 'and h2 reads both rows from its own disk');
  t.match(r.stdout, /cluster demo down: \d+ processes stopped, 5 namespaces removed/);
  t.same(netnsWithPrefix('demo'), []);
});
