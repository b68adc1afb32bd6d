// `npm run bench -- NAME [--quick] [--json]`: runs one benchmark. Each prints
// its figures beside a baseline measured in the same run and writes JSON under
// bench/results/ (with --json, also as the last line of stdout).
import { reportError } from '../cli/output.js';
import { fsBench } from './fs.js';
import { memBench } from './mem.js';
import { meshBench } from './mesh.js';
import { migrateBench } from './migrate.js';
import { netBench } from './net.js';
import { policyBench } from './policy.js';
import { posixBench } from './posix.js';

const benches: Record<string, (argv: string[]) => Promise<void>> = { mesh: meshBench, fs: fsBench, migrate: migrateBench, mem: memBench, net: netBench, policy: policyBench, posix: posixBench };
const [name, ...rest] = process.argv.slice(2);
const bench = benches[name ?? ''];
if (!bench) {
  process.stderr.write(`usage: npm run bench -- <${Object.keys(benches).join('|')}> [--quick] [--json]\n`);
  process.exitCode = 2;
} else {
  await bench(rest).catch(reportError);
}
