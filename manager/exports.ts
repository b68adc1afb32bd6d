// What a host offers under /pj/<host>/: `--export NAME=PATH[:OPTIONS]` (a
// directory; options as /etc/exports has them) and `--device NAME=PATH` (a
// character device). Checked when the agent starts.
import { statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { PjError, codes } from '../common/errors.js';
import type { ExportInfo, Squash } from './cluster-state.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const HOST = /^[A-Za-z0-9][A-Za-z0-9-]{0,62}$/;
/** nobody and nogroup: whom a squashed caller becomes unless anonuid/anongid say otherwise (as NFS). */
export const ANON_ID = 65534;

/**
 * Options, comma-separated after the path: `ro`/`rw` (default rw), `root_squash` (the default, as NFS:
 * root on another host is not root on this disk), `no_root_squash`, `all_squash`, `anonuid=N`,
 * `anongid=N`, `hosts=H1+H2` (only those hosts may use it; by default every host).
 */
export function parseExportSpec(spec: string, kind: 'dir' | 'device'): ExportInfo {
  const eq = spec.indexOf('=');
  if (eq <= 0) throw new PjError(codes.USAGE, `export '${spec}' must look like NAME=PATH${kind === 'dir' ? '[:OPTIONS]' : ''}`);
  const name = spec.slice(0, eq);
  let path = spec.slice(eq + 1);
  if (!NAME.test(name)) throw new PjError(codes.USAGE, `export name '${name}' must be letters, digits, '.', '_' or '-'`);
  const info: ExportInfo = { name, path, readOnly: false, kind };
  const colon = path.lastIndexOf(':');
  if (kind === 'dir' && colon > 0) {
    Object.assign(info, parseOptions(name, path.slice(colon + 1)));
    path = info.path = path.slice(0, colon);
  }
  if (!isAbsolute(path)) throw new PjError(codes.USAGE, `export ${name}: path '${path}' must be absolute`);
  return info;
}

function parseOptions(name: string, text: string): Partial<ExportInfo> {
  const o: Partial<ExportInfo> = {};
  const id = (k: string, v: string) => {
    if (!/^\d{1,10}$/.test(v) || Number(v) > 0xfffffffe) throw new PjError(codes.USAGE, `export ${name}: ${k}=${v} is not a uid or gid`);
    return Number(v);
  };
  for (const opt of text.split(',')) {
    const [k, v = ''] = opt.split('=', 2);
    if (k === 'ro' || k === 'rw') o.readOnly = k === 'ro';
    else if (k === 'root_squash' || k === 'no_root_squash' || k === 'all_squash') o.squash = ({ root_squash: 'root', no_root_squash: 'none', all_squash: 'all' } as const)[k];
    else if (k === 'anonuid') o.anonUid = id(k, v);
    else if (k === 'anongid') o.anonGid = id(k, v);
    else if (k === 'hosts') {
      o.hosts = v.split('+');
      const bad = o.hosts.find((h) => !HOST.test(h));
      if (bad !== undefined) throw new PjError(codes.USAGE, `export ${name}: '${bad}' in hosts= is not a host name (hosts=H1+H2)`);
    } else throw new PjError(codes.USAGE, `export ${name}: unknown option '${opt}' (ro, rw, root_squash, no_root_squash, all_squash, anonuid=N, anongid=N, hosts=H1+H2)`);
  }
  return o;
}

/** How an export treats its remote callers: whom they become on its disk, if anyone. */
export function squashOf(e: ExportInfo): { squash: Squash; uid: number; gid: number } {
  return { squash: e.squash ?? 'root', uid: e.anonUid ?? ANON_ID, gid: e.anonGid ?? ANON_ID };
}

/** Whether host `host` may use export `e` (its owner always may). */
export function mayUse(e: ExportInfo, host: string, owner: string): boolean {
  return host === owner || e.hosts === undefined || e.hosts.includes(host);
}

/** The export's options as `pj hosts` shows them (those that differ from the defaults). */
export function optionsText(e: ExportInfo): string {
  const o = [e.readOnly ? 'ro' : '', e.squash === 'none' ? 'no_root_squash' : e.squash === 'all' ? 'all_squash' : '',
    e.anonUid !== undefined ? `anonuid=${e.anonUid}` : '', e.anonGid !== undefined ? `anongid=${e.anonGid}` : '', e.hosts ? `hosts=${e.hosts.join('+')}` : ''].filter(Boolean);
  return o.length ? `:${o.join(',')}` : '';
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
