// The soak under faults (scripts/chaos.ts), two minutes with a fixed seed: the
// agents survive every fault, every job runs exactly once and loses nothing (each
// counter line once, every committed SQLite row, redis counting each INCR once),
// and nothing is left behind. The 30-minute run is `npm run chaos -- --minutes 30`.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../../common/repo-root.js';

// Eight faults, however long they take: a busy machine slows them, and a fixed duration then saw fewer.
const FAULTS = 8;
const r = spawnSync(process.execPath, [join(repoRoot(), 'dist', 'scripts', 'chaos.js'), '--count', String(FAULTS), '--seed', '1', '--every', '8',
  '--json'], { encoding: 'utf8', timeout: 15 * 60_000 });
const last = r.stdout.trim().split('\n').at(-1) ?? '';
t.ok(r.status === 0 || r.status === 1, `chaos ran to its end: exit 0 (no violation) or 1 (violations, judged below) (${r.stderr.trim().slice(-500)})`);
const report = JSON.parse(last) as { faults: Record<string, number>; moves: { made: number }; violations: Array<{ kind: string; what: string }>; counterLines: number };
const of = (kinds: string[]) => report.violations.filter((v) => kinds.includes(v.kind)).map((v) => v.what);
t.same(of(['agents', 'hang', 'copies', 'cleanup', 'harness']), [], `agents, copies and clean-up held; faults survived: ${JSON.stringify(report.faults)}, ${report.moves.made} moves`);
t.same(of(['jobs', 'data']), [], 'every job ran on and lost nothing');
t.equal(Object.values(report.faults).reduce((a, b) => a + b, 0), FAULTS, 'every fault was injected and survived');
t.ok(report.moves.made > 0, 'jobs moved meanwhile');
t.ok(report.counterLines > 1000, `the counter ran throughout (${report.counterLines} lines)`);
