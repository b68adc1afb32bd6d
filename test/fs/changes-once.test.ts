// The owner's side of changes asked again (fs-layer/changes-once.ts), on a real
// export in a temporary folder: a change named twice is done once; after the
// owner forgot it (a restart), the error a second try meets because the first
// one happened is that first one's success; an exclusive create stays an error.
import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { constants as F } from 'node:fs';
import { ExportServer } from '../../fs-layer/export-server.js';
import { ChangesOnce } from '../../fs-layer/changes-once.js';

const root = mkdtempSync(join(tmpdir(), 'pj-changes-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));
const server = new ExportServer([{ name: 'data', path: root, readOnly: false, kind: 'dir' }]);
t.teardown(() => server.close());
const change = (once: ChangesOnce, rid: string, again: boolean, op: string, args: unknown[]) =>
  once.run('h1', rid, again, op, args, () => (server[op as 'unlink'] as (...a: unknown[]) => unknown)(...args));

t.test('a change asked again by the same name is answered as the first time, not done again', async (t) => {
  const once = new ChangesOnce(server);
  writeFileSync(join(root, 'f'), 'x');
  const first = await change(once, 'r1', false, 'unlink', ['data', 'f']);
  writeFileSync(join(root, 'f'), 'someone else made it again');
  t.same(await change(once, 'r1', true, 'unlink', ['data', 'f']), first, 'the same answer');
  t.ok(existsSync(join(root, 'f')), 'and the file made since is still there');
  await t.rejects(change(once, 'r2', false, 'unlink', ['data', 'nothing']), { code: 'ENOENT' }, 'a change asked the first time meets its errors as they are');
});

t.test('an owner that forgot a change (restarted) takes the error its first try causes as that try\'s success', async (t) => {
  const once = new ChangesOnce(server);
  mkdirSync(join(root, 'd'));
  t.match(await change(once, 'a', true, 'mkdir', ['data', 'd', 0o755]), { attr: { mode: F.S_IFDIR | 0o755 } }, 'mkdir asked again: EEXIST is its success');
  t.match(await change(once, 'b', true, 'rmdir', ['data', 'gone']), { ino: 0 }, 'rmdir asked again: ENOENT is its success');
  writeFileSync(join(root, 'to'), 'renamed');
  t.ok(await change(once, 'c', true, 'rename', ['data', 'from', 'to', 0]), 'rename asked again, the new name there: ENOENT is its success');
  await t.rejects(change(once, 'd', false, 'mkdir', ['data', 'd', 0o755]), { code: 'EEXIST' }, 'asked the first time, EEXIST is EEXIST');
  writeFileSync(join(root, 'lock'), '');
  await t.rejects(change(once, 'e', true, 'create', ['data', 'lock', F.O_CREAT | F.O_EXCL | F.O_WRONLY, 0o644]), { code: 'EEXIST' },
    'an exclusive create asked again stays EEXIST: whose file it is cannot be told');
});
