// A peer that holds the cluster secret and sends hostile paths straight to an
// owner's `fs` RPCs, bypassing the kernel's own path walk:
//   node fs-escape.js OWNER_ADDR:PORT OWNER_NAME SECRET_FILE EXPORT SECONDS
// Prints {attempts, leaks, errors} where a leak is any answer that shows a file outside the export.
import { readFileSync } from 'node:fs';
import { silentLog } from '../../common/log.js';
import { Mesh } from '../../manager/mesh/mesh.js';

const [target, owner, secretFile, exp, secondsArg] = process.argv.slice(2);
const [address, port] = target.split(':');
const mesh = new Mesh({ self: 'intruder', secret: readFileSync(secretFile), log: silentLog, resolvePeer: async () => ({ address, port: Number(port) }) });
const call = (op: string, ...args: unknown[]) => mesh.call(owner, 'fs', { op, args }, 5000);

const hostile = ['../../../etc/passwd', '/etc/passwd', 'abs-link/passwd', 'rel-link/etc/passwd', 'swap/passwd', '..', 'sub/../../etc/passwd'];
const errors: Record<string, number> = {};
const leaks: string[] = [];
let attempts = 0;
const until = Date.now() + Number(secondsArg) * 1000;
do {
  for (const rel of hostile) {
    for (const [op, args] of [['lstat', [exp, rel]], ['open', [exp, rel, 0]], ['readdir', [exp, rel]], ['readlink', [exp, rel]]] as const) {
      attempts++;
      try {
        const r = (await call(op, ...args)) as { handle?: number } | Array<{ name: string }> | string;
        if (op === 'open') {
          const data = Buffer.concat((await call('read', (r as { handle: number }).handle, 0, 4096)) as Buffer[]);
          await call('release', (r as { handle: number }).handle);
          if (data.toString().includes('root:')) leaks.push(`${op} ${rel}`);
        } else if (op === 'readdir' && (r as Array<{ name: string }>).some((e) => e.name === 'passwd' || e.name === 'shadow')) {
          leaks.push(`${op} ${rel}`);
        } else if (op === 'lstat' && rel.endsWith('passwd')) {
          leaks.push(`${op} ${rel}`);
        }
      } catch (e) {
        const code = (e as { code?: string }).code ?? 'unknown';
        errors[code] = (errors[code] ?? 0) + 1;
      }
    }
  }
} while (Date.now() < until);
process.stdout.write(JSON.stringify({ attempts, leaks, errors }) + '\n');
await mesh.close();
