// What a host offers under /pj/<host>/: `--export NAME=PATH[:ro]` (a directory)
// and `--device NAME=PATH` (a character device). Checked when the agent starts.
import { statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { PjError, codes } from '../common/errors.js';
import type { ExportInfo } from './cluster-state.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function parseExportSpec(spec: string, kind: 'dir' | 'device'): ExportInfo {
  const eq = spec.indexOf('=');
  if (eq <= 0) throw new PjError(codes.USAGE, `export '${spec}' must look like NAME=PATH${kind === 'dir' ? '[:ro]' : ''}`);
  const name = spec.slice(0, eq);
  let path = spec.slice(eq + 1);
  const readOnly = kind === 'dir' && path.endsWith(':ro');
  if (readOnly) path = path.slice(0, -3);
  if (!NAME.test(name)) throw new PjError(codes.USAGE, `export name '${name}' must be letters, digits, '.', '_' or '-'`);
  if (!isAbsolute(path)) throw new PjError(codes.USAGE, `export ${name}: path '${path}' must be absolute`);
  return { name, path, readOnly, kind };
}

/** Throws a clear error when an export's path is missing or of the wrong kind. */
export function checkExport(e: ExportInfo): void {
  let st;
  try {
    st = statSync(e.path);
  } catch (err) {
    throw new PjError(codes.USAGE, `export ${e.name}: ${(err as Error).message}`);
  }
  if (e.kind === 'dir' && !st.isDirectory()) throw new PjError(codes.USAGE, `export ${e.name}: ${e.path} is not a directory`);
  if (e.kind === 'device' && !st.isCharacterDevice()) throw new PjError(codes.USAGE, `export ${e.name}: ${e.path} is not a character device`);
}

export function checkUniqueNames(exports: ExportInfo[]): void {
  const seen = new Set<string>();
  for (const e of exports) {
    if (seen.has(e.name)) throw new PjError(codes.USAGE, `export name '${e.name}' given twice`);
    seen.add(e.name);
  }
}
