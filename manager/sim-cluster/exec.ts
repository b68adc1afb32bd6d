// `pj cluster exec HOST -- CMD`: runs a command inside a host's network and
// mount namespaces, as nsenter would; stdio and the exit code pass through.
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { PjError, codes } from '../../common/errors.js';
import { findHost, paths, readClusterFile } from './layout.js';
import { nsenterArgs } from './namespaces.js';

export function nsenterFor(dir: string, host: string): string[] {
  const c = readClusterFile(dir);
  if (host === 'etcd') return nsenterArgs(c.etcd.netns);
  const h = findHost(c, host);
  return nsenterArgs(h.netns, paths(dir).mountNs(h.name));
}

export function execOnHost(dir: string, host: string, cmd: string[]): Promise<number> {
  if (cmd.length === 0) throw new PjError(codes.USAGE, 'pj cluster exec HOST -- CMD...: no command given');
  const child = spawn('nsenter', [...nsenterFor(dir, host), ...cmd], { stdio: 'inherit' });
  return new Promise((resolve, reject) => {
    child.on('error', (e) => reject(new PjError(codes.CLUSTER, `cannot run nsenter: ${e.message}`)));
    child.on('exit', (code, signal) => resolve(code ?? 128 + (signal ? constants.signals[signal] : 0)));
  });
}

