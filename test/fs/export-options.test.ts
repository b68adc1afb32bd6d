// Export options as /etc/exports has them (manager/exports.ts), on a real
// export in a temporary folder: the owner acts as a squashed caller (root under
// root_squash, anyone under all_squash), so that the kernel checks and owns what
// it does as that user's; a host an export is not for is refused.
import t from 'tap';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { constants as F } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ExportServer, type Caller } from '../../fs-layer/export-server.js';
import { ANON_ID, parseExportSpec } from '../../manager/exports.js';

const root = mkdtempSync(join(tmpdir(), 'pj-export-options-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
for (const name of ['sq', 'all', 'open', 'two']) {
  mkdirSync(join(root, name, 'pub'), { recursive: true });
  chmodSync(join(root, name, 'pub'), 0o777);
  mkdirSync(join(root, name, 'closed'), { mode: 0o755 });
  writeFileSync(join(root, name, 'secret'), 'root only', { mode: 0o600 });
}
const server = new ExportServer([
  parseExportSpec(`sq=${join(root, 'sq')}`, 'dir'),
  parseExportSpec(`all=${join(root, 'all')}:all_squash,anonuid=4242,anongid=4343`, 'dir'),
  parseExportSpec(`open=${join(root, 'open')}:no_root_squash`, 'dir'),
  parseExportSpec(`two=${join(root, 'two')}:no_root_squash,hosts=h1+h2`, 'dir'),
]);
t.teardown(() => server.close());
const ROOT: Caller = { uid: 0, gid: 0 };
const ALICE: Caller = { uid: 4000, gid: 4000 };
/** Creates `rel` in export `exp`, asked by host h1 for `who`; the file's owner on disk. */
function create(exp: string, rel: string, who: Caller | undefined): string {
  const r = server.asPeer('h1', who, exp, () => server.create(exp, rel, F.O_CREAT | F.O_WRONLY, 0o644, who));
  server.release(r.handle);
  const st = statSync(join(root, exp, rel));
  return `${st.uid}:${st.gid}`;
}

t.test('options are read as /etc/exports has them; an unknown one is an error that names them all', async (t) => {
  t.match(parseExportSpec('d=/srv/d', 'dir'), { readOnly: false, squash: undefined, hosts: undefined }, 'no options: rw, root_squash (squashOf), every host');
  t.match(parseExportSpec('d=/srv/d:ro', 'dir'), { path: '/srv/d', readOnly: true });
  t.match(parseExportSpec('d=/srv/d:rw,all_squash,anonuid=7,anongid=8,hosts=h1+h-2', 'dir'), { readOnly: false, squash: 'all', anonUid: 7, anonGid: 8, hosts: ['h1', 'h-2'] });
  t.throws(() => parseExportSpec('d=/srv/d:rw,secure', 'dir'), /unknown option 'secure' \(ro, rw, root_squash/);
  t.throws(() => parseExportSpec('d=/srv/d:anonuid=me', 'dir'), /anonuid=me is not a uid/);
});

t.test('root_squash (the default): another host\'s root is the anonymous user on this disk', async (t) => {
  t.equal(create('sq', 'pub/by-root', ROOT), `${ANON_ID}:${ANON_ID}`, 'what root makes in a folder open to all is nobody\'s');
  t.throws(() => create('sq', 'closed/by-root', ROOT), { code: 'EACCES' }, 'it cannot make a file in root\'s 0755 folder');
  t.throws(() => server.asPeer('h1', ROOT, 'sq', () => server.open('sq', 'secret', F.O_RDONLY)), { code: 'EACCES' }, 'nor read root\'s 0600 file');
  t.equal(create('sq', 'pub/unnamed', undefined), `${ANON_ID}:${ANON_ID}`, 'a caller not named counts as root');
  t.equal(create('sq', 'pub/by-alice', ALICE), '4000:4000', 'another user is themself');
  const r = server.open('sq', 'secret', F.O_RDONLY); // this host's own requests are never squashed
  server.release(r.handle);
  t.equal(r.attr.mode & 0o777, 0o600, 'this host\'s own root opens the 0600 file: the thread is itself again after acting as another');
});

t.test('all_squash with anonuid and anongid: every caller is that user', async (t) => {
  t.equal(create('all', 'pub/by-alice', ALICE), '4242:4343', 'alice is 4242:4343');
  t.equal(create('all', 'pub/by-root', ROOT), '4242:4343', 'root too');
  chownSync(join(root, 'all', 'pub', 'by-alice'), 4000, 4000);
  t.throws(() => server.asPeer('h1', ALICE, 'all', () => server.setattr('all', 'pub/by-alice', { mode: 0o666 })), { code: 'EPERM' }, 'a file alice owns is not the anonymous user\'s to chmod');
});

t.test('no_root_squash: root is root; hosts=: only those hosts may use the export', async (t) => {
  t.equal(create('open', 'closed/by-root', ROOT), '0:0', 'root makes a file in root\'s folder');
  t.equal(create('two', 'pub/from-h1', ROOT), '0:0', 'h1 is one of the export\'s hosts');
  t.throws(() => server.asPeer('h3', ROOT, 'two', () => server.lstat('two', '')), { code: 'EACCES', message: /export two is not for h3/ }, 'h3 is refused');
});
