// `npm run demo` (past its set-up step) shows a live 3-host cluster and cleans up by itself.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../common/repo-root.js';
import { netnsWithPrefix } from './helpers/cluster.js';

t.test('the demo runs to its end and leaves nothing behind', async (t) => {
  const t0 = Date.now();
  // About 2 minutes here; a busy machine takes longer (the demo waits for what it shows).
  const r = spawnSync(process.execPath, [join(repoRoot(), 'dist', 'scripts', 'demo.js')], { encoding: 'utf8', timeout: 360_000 });
  t.equal(r.status, 0, r.stderr);
  t.comment(`the demo took ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  t.match(r.stdout, /cluster demo up in [\d.]+ s: h1 10\.66\.0\.11, h2 10\.66\.0\.12, h3 10\.66\.0\.13/);
  t.match(r.stdout, /h2\s+down/, 'the killed agent shows as down');
  t.match(r.stdout, /h3: streamed 256 MiB at \d+ MiB\/s/);
  t.match(r.stdout, /h2\|.*\nh1 via \/pj\|/, 'sqlite3 on h1 wrote through /pj into h2\'s database');
  t.match(r.stdout, /^2 rows$/m, 'and h2 reads both rows from its own disk');
  t.match(r.stdout, /j[0-9a-f]{6}: h1 -> h2 in \d+ ms of downtime/, 'the running program moved to h2');
  t.match(r.stdout, /j[0-9a-f]{6}: h2 -> h3 in \d+ ms of downtime/, 'and on to h3');
  t.match(r.stdout, /j[0-9a-f]{6}: h3 -> h1 in \d+ ms of downtime \(hybrid: [\d.]+ MiB pre-copied in \d+ rounds.* \d+ pages from this host's store/, 'and back to h1, in hybrid mode, with its pages from h1\'s store');
  t.match(r.stdout, /page store: [\d.]+ of \d+ MiB, \d+ pages/, 'pj cache shows h1\'s page store');
  const ticks = [...r.stdout.matchAll(/^tick (\d+) \S+ redis on h3 counted (\d+)$/gm)].map((m) => [Number(m[1]), Number(m[2])]);
  t.ok(ticks.length >= 8 && ticks.every(([n], i) => i === 0 || n > ticks[i - 1][0]), `the ticks it printed keep increasing across the moves: ${ticks.map(([n]) => n).join(' ')}`);
  t.ok(ticks.every(([n, counted]) => counted === n + 1), 'redis on h3 counted each tick once, over one connection kept through the moves');
  t.match(r.stdout, /10\.77\.0\.0\/16\s+h3/, 'pj routes shows the route');
  t.match(r.stdout, /j[0-9a-f]{6}\s+ticker\s+h1\s+\d+\s+running.*\s3\n/, 'pj ps shows it back on h1, moved three times');
  t.match(r.stdout, /^signal 15$/m, 'pj wait gives its exit status');
  const tops = r.stdout.split('pj top — ').slice(1);
  t.match(tops[0] ?? '', /j[0-9a-f]{6}\s+reader\s+h2\s+follow\s.*\s1\s+\d+s ago \(policy: traffic there\)/, 'pj top: the managers moved the reader to h2, where its data is');
  t.match(tops[1] ?? '', /j[0-9a-f]{6}\s+reader\s+h3\s+follow\s.*\s2\s+\d+s ago \(policy: traffic there\)/, 'then on to h3 when its reads went there');
  t.match(r.stdout, /cluster demo down: \d+ processes stopped, 5 namespaces removed/);
  t.same(netnsWithPrefix('demo'), []);
  if (!t.passing()) t.comment(`the demo's stderr:\n${r.stderr}`);
});
