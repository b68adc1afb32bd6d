// The CLI outside a cluster: version, doctor, clear errors without stack traces.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pjCli } from '../../common/repo-root.js';

/** A temporary folder, removed when the tests end. */
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
const pj = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [pjCli(), ...args], { encoding: 'utf8', env: { ...process.env, PJ_CLUSTER_DIR: tempDir('pj-cli-'), ...env } });

t.test('--version prints the package version', async (t) => {
  const r = pj(['--version']);
  t.equal(r.status, 0);
  t.match(r.stdout, /^\d+\.\d+\.\d+\n$/);
});

t.test('doctor checks every feature PicoJump needs, as JSON', async (t) => {
  const r = pj(['doctor', '--json']);
  const checks = JSON.parse(r.stdout) as Array<{ name: string; status: string; detail: string; fix?: string }>;
  t.same(checks.map((c) => c.name), ['root', 'fuse', 'fuse-passthrough', 'userfaultfd', 'namespaces', 'nftables', 'criu', 'criu-check', 'pipe-max-size', 'etcd']);
  const failing = checks.filter((c) => c.status === 'fail');
  t.same(failing, [], 'this machine (set up by scripts/setup) passes every check');
  t.equal(r.status, 0);
  t.match(checks.find((c) => c.name === 'criu')!.detail, /^CRIU 4\.(\d+)/);
  t.match(checks.find((c) => c.name === 'userfaultfd')!.detail, /wp/);
});

t.test('an agent that is not there: a clear error, exit 1, no stack trace', async (t) => {
  const r = pj(['hosts']);
  t.equal(r.status, 1);
  t.match(r.stderr, /^pj: PJ_ERR_AGENT_UNAVAILABLE: no agent answers at .*agent\.sock \(ENOENT\); is the cluster up\? \(pj cluster up\)\n$/);
  const debug = pj(['hosts'], { PJ_DEBUG: '1' });
  t.match(debug.stderr, /\n\s+at /, 'PJ_DEBUG=1 adds the stack');
});

t.test('cluster commands without a cluster', async (t) => {
  const s = pj(['cluster', 'status']);
  t.equal(s.status, 1);
  t.match(s.stderr, /^pj: PJ_ERR_CLUSTER: no cluster is up in /);
  const d = pj(['cluster', 'down']);
  t.equal(d.status, 0);
  t.equal(d.stdout, 'no cluster is up\n');
  const bad = pj(['cluster', 'up', '--name', 'Bad Name']);
  t.equal(bad.status, 2);
  t.match(bad.stderr, /PJ_ERR_USAGE: cluster name 'Bad Name' must be/);
});

t.test('pj agent refuses a world-readable secret and bad exports before starting', async (t) => {
  const dir = tempDir('pj-agent-');
  const { writeFileSync } = await import('node:fs');
  writeFileSync(join(dir, 'secret'), 'x'.repeat(32), { mode: 0o644 });
  const base = ['agent', '--host', 'x', '--listen', '127.0.0.1:0', '--etcd', 'http://127.0.0.1:1', '--secret-file', join(dir, 'secret'), '--state-dir', dir, '--mount', join(dir, 'pj')];
  const r = pj(base);
  t.equal(r.status, 2);
  t.match(r.stderr, /PJ_ERR_USAGE: secret file .* is readable by others \(mode 644\); chmod 600 it/);
  writeFileSync(join(dir, 'secret'), 'x'.repeat(32), { mode: 0o600 });
  const { chmodSync } = await import('node:fs');
  chmodSync(join(dir, 'secret'), 0o600);
  const e = pj([...base, '--export', `data=${join(dir, 'missing')}`]);
  t.equal(e.status, 2);
  t.match(e.stderr, /PJ_ERR_USAGE: export data: ENOENT/);
  const rel = pj([...base, '--export', 'data=relative/path']);
  t.match(rel.stderr, /PJ_ERR_USAGE: export data: path 'relative\/path' must be absolute/);
  const timeout = pj([...base, '--attr-timeout', '-1']);
  t.equal(timeout.status, 2);
  t.match(timeout.stderr, /PJ_ERR_USAGE: --attr-timeout must be a number from 0 to 3600/);
});

t.test('pj-mv explains its usage, and a pid that is not there', async (t) => {
  const pjMv = pjCli().replace(/pj\.js$/, 'pj-mv.js');
  const usage = spawnSync(process.execPath, [pjMv, '123'], { encoding: 'utf8' });
  t.equal(usage.status, 2);
  t.match(usage.stderr, /^pj: PJ_ERR_USAGE: usage: pj-mv <pid\|job> <host>/);
  const gone = spawnSync(process.execPath, [pjMv, '999999999', 'h2'], { encoding: 'utf8' });
  t.equal(gone.status, 1);
  t.match(gone.stderr, /^pj: PJ_ERR_NOT_A_JOB: no process 999999999 here/);
});
